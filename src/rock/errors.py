"""ROCK's error tree, shared by the service, the SDK and the task packages shipped into env images
(so it imports nothing but the standard library).

Every error names its ``kind``; ``STATUS`` below is the one table from a kind to its HTTP status
(a class that is not a family answers with its own ``status_code``). Each front door only puts
that status and kind into its wire's body: ROCK's envelope (rock.admin.errors), E2B's
``{code, message}`` and Connect errors (rock.admin.e2b.errors), OpenAI's and Anthropic's error
bodies (rock.chat.native), AgentScope's (rock.admin.training.routes).
"""

from __future__ import annotations

from typing import Any

# A kind -> its HTTP status: the classes below that stand for one failure each (their kind is their
# name, and RockError gives each its status_code from here), and the kinds that travel inside one
# family class (an agent's, an env's, a training service's, a task's), named by the failure rather
# than by a class of their own.
STATUS: dict[str, int] = {
    "BadRequest": 400, "Unauthorized": 401, "Forbidden": 403, "PayloadTooLarge": 413,
    "SandboxNotFound": 404, "SessionNotFound": 404, "SnapshotNotFound": 404, "VolumeNotFound": 404,
    "SecretNotFound": 404, "SessionExists": 409, "SessionBusy": 409, "Conflict": 409, "SandboxNotRunning": 409,
    "SandboxPaused": 409, "AgentGone": 410, "QuotaExceeded": 429, "SandboxStartError": 503, "CapacityExceeded": 503,
    "CommandTimeout": 504, "AgentTimeout": 504,
    # the agent's failures inside a sandbox (rock.agent.errors)
    "FileNotFound": 404, "NotFound": 404, "PermissionDenied": 403, "IsADirectory": 400,
    "NotADirectory": 400, "FileExists": 409, "DirectoryNotEmpty": 409, "NoSpace": 507,
    "Cancelled": 499, "ConnectionRefused": 502,
    # envs (rock.envs): an env call refused or failed
    "EnvNotFound": 404,        # unknown id, or a handle that was closed / reclaimed
    "EnvUnavailable": 422,     # known id that cannot run here (missing corpus, fails inside gem)
    "EnvMakeError": 422,       # the env's constructor raised
    "EnvBuildError": 422,      # its image could not be built (a package that does not install, a bad import)
    "EnvBroken": 409,          # an earlier call timed out; the env must be closed and made again
    "EnvLost": 410,            # its env host died; the env is gone
    # a fork's replay did not reach the source's observation (rock/envs/forking.py)
    "EnvNotDeterministic": 409,
    # the env's own code raised in reset/step (most often on an action it cannot take; the message
    # names the exception and where): an answer about this call's input, not a failure of the admin
    "EnvError": 422,
    "EnvHostDied": 502,        # the env host process died during this call
    "EnvTimeout": 504,         # the call ran past its timeout
    # training (rock.training) and agentic tasks (rock.agentic.tasks)
    "UnknownEnvType": 404,
    "TaskNotFound": 404,
    "InstanceNotFound": 404,
    "InstanceReleased": 410,
    "InstanceExists": 409,
    "SuiteUnavailable": 422,
    "UnknownSuite": 404,
    # E2B's envd speaks Connect: a ``ConnectError``'s code (rock.admin.e2b) as its HTTP status
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
    "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
    "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
    "unauthenticated": 401,
}


def status_of(kind: str, default: int = 500) -> int:
    """The HTTP status a failure of ``kind`` answers with (``default`` for a kind not in ``STATUS``)."""
    return STATUS.get(kind, default)


class RockError(Exception):
    """The root of ROCK's errors. ``kind`` is the name an answer carries (``error_type``): the
    class's own, or, for a class that stands for a family of failures (an agent's, an env's, a
    training task's), the member's, whose HTTP status ``STATUS`` gives."""

    status_code = 500
    family = False  # True: ``kind`` names a member of ``STATUS``, which sets the status (else status_code)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # one failure, one kind: its status is STATUS's for its name, unless the class sets its own
        if not cls.family and "status_code" not in vars(cls) and cls.__name__ in STATUS:
            cls.status_code = STATUS[cls.__name__]

    def __init__(self, message: str = "", kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind or type(self).__name__
        if self.family:
            self.status_code = status_of(self.kind, type(self).status_code)


class BadRequest(RockError):
    """The request was refused for a reason the message names (a bad path, an empty list, a value this machine
    cannot honour). HTTP 400."""


class SandboxNotFound(RockError):
    """No such sandbox, or one of another namespace (told the same, so ids do not leak). HTTP 404."""


class SessionNotFound(RockError):
    """The sandbox has no session of that name. HTTP 404."""


class SessionExists(RockError):
    """A session of that name is already open in the sandbox; close it first or pick another name. HTTP 409."""


class Conflict(RockError):
    """The request contradicts the sandbox's state (e.g. a command on a stopped sandbox)."""


class SessionBusy(RockError):
    """The session is still running a command: wait for it, send input or interrupt it first. HTTP 409."""


class Forbidden(RockError):
    """The caller may not do this: its token's namespace does not allow it, or the sandbox refused it (permission
    denied there). HTTP 403."""


class Unauthorized(RockError):
    """No API token, or one the admin does not know; send ``Authorization: Bearer <token>``. HTTP 401."""


class PayloadTooLarge(RockError):
    """The request body is over the route's limit. HTTP 413."""


class SandboxStartError(RockError):
    """The sandbox could not start (the image, the backend or the start timeout); the message gives the reason.
    HTTP 503."""


class Refused(RockError):
    """A start (or an env host, a snapshot) that admission refused at once, before anything was made:
    ``limit`` names the limit it hit; ``retry_after`` (seconds) is sent as ``Retry-After``."""

    def __init__(self, message: str = "", limit: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class CapacityExceeded(Refused):
    """This node has no room for the start: its cpus or memory (times the operator's overcommit) are promised
    to sandboxes that run; the message names the limit. Stop one, or try again later. HTTP 503."""


class QuotaExceeded(Refused):
    """The caller's namespace is at one of its quotas (running sandboxes, memory, cpus, env hosts, snapshots) or
    past its create rate; the message names the limit. HTTP 429 (with ``Retry-After`` for a rate)."""


class SandboxNotRunning(RockError):
    """The sandbox exists but is not running (stopped, archived, or its node was lost), so nothing can run in it;
    restart it first. HTTP 409."""


class SandboxPaused(RockError):
    """The sandbox is paused (its processes frozen in memory): nothing runs in it until it is
    resumed. Its state, not the request, is the conflict."""


class SnapshotNotFound(RockError):
    """No snapshot of that name for this owner (another owner's answers the same way)."""


class VolumeNotFound(RockError):
    """No volume of that name or id for this owner (another owner's answers the same way). HTTP 404."""


class SecretNotFound(RockError):
    """No secret of that name for this namespace (another namespace's answers the same way: missing). HTTP 404."""


class CommandTimeout(RockError):
    """A call ran past its timeout, e.g. ``anti_call_llm`` waiting for the sandbox's next model call. HTTP 504."""


class AgentError(RockError):
    """The agent inside the sandbox reported a failure (its type name travels in ``kind``); a kind
    ``STATUS`` does not name answers 400."""

    status_code = 400
    family = True


class AgentGone(RockError):
    """The connection to the sandbox's agent broke: the sandbox died or was stopped."""


class AgentTimeout(RockError):
    """The sandbox's agent did not answer in time: its processes are stopped, starved or stuck."""


ERRORS = {cls.__name__: cls for cls in RockError.__subclasses__()} | {"RockError": RockError}
ERRORS |= {cls.__name__: cls for cls in Refused.__subclasses__()}  # a refusal names which


# The families below are made after ERRORS: an answer names the kind, never the class.
TRAINING_KINDS = ("BadRequest", "UnknownEnvType", "TaskNotFound", "InstanceNotFound", "InstanceReleased",
                  "InstanceExists", "SuiteUnavailable")
TRAINING_STATUS = {kind: STATUS[kind] for kind in TRAINING_KINDS}  # a training error's kind -> its HTTP status


class TrainingError(RockError):
    """What the training service refuses: ``kind`` names it (``TaskNotFound``, ``InstanceReleased``...),
    raised alike by the admin and by the SDK's training client."""

    family = True

    def __init__(self, message: str, kind: str = "BadRequest"):
        super().__init__(message, kind)


ENV_KINDS = ("BadRequest", "EnvNotFound", "EnvUnavailable", "EnvMakeError", "EnvBuildError", "EnvBroken", "EnvLost",
             "EnvNotDeterministic", "EnvError", "EnvHostDied", "EnvTimeout")
ENV_STATUS = {kind: STATUS[kind] for kind in ENV_KINDS}  # an env error's kind -> its HTTP status


class EnvError(RockError):
    """An env call refused or failed; ``kind`` names why (EnvNotFound, EnvMakeError, EnvTimeout, ...)
    and sets the HTTP status."""

    family = True  # kind defaults to "EnvError" (the class's name)
    # a vector call some of whose envs failed: the failures by env index, and what the others returned
    errors: dict[int, dict[str, Any]]
    results: dict[int, dict[str, Any]]


class TaskError(RockError):
    """A task, suite, harness or policy that cannot be used (agentic tasks, training tasks): ``kind``
    names the failure (BadTask, BadRequest, UnknownSuite, TaskNotFound, ...) and the message says
    what to fix. HTTP 400, or the status ``STATUS`` gives its kind (404 for an unknown suite or task)."""

    status_code = 400
    family = True

    def __init__(self, message: str, kind: str = "BadTask"):
        super().__init__(message, kind)


# E2B's protocol (the E2B door, rock.admin.e2b): refusals in E2B's terms, made after ERRORS like the
# families (ROCK's envelope never carries them). The door's ``errors`` module puts each on E2B's wire.

class E2BError(RockError):
    """A refusal in E2B's terms, with the HTTP status E2B answers it with (``status_code``): the
    control plane's and envd's ``/files`` as ``{"code": <status>, "message"}``, the code
    interpreter's as plain text. ``retry_after`` (seconds): a rate's refusal, sent as ``Retry-After``."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status_code = status
        self.retry_after = retry_after


class ConnectError(RockError):
    """An envd RPC's failure under a Connect code (``kind``: ``not_found``, ``invalid_argument``,
    ...); ``STATUS`` gives the HTTP status of a unary call's answer (a stream ends with it under 200)."""

    family = True

    def __init__(self, code: str, message: str):
        super().__init__(message, code)

    @property
    def code(self) -> str:
        """The Connect code (the same as ``kind``)."""
        return self.kind


class SandboxGone(RockError):
    """The data plane's answer for a sandbox that is not (or no longer) there: what E2B's edge
    proxy says, 502 "... was not found", which the e2b SDK turns into its not-running exception."""

    status_code = 502

    def __init__(self, sandbox_id: str | None, paused: bool = False):
        # "was not found" is what the SDK matches; a paused sandbox's caller also learns why and what to do
        name = sandbox_id or "(unknown)"
        super().__init__(f"The sandbox {name} was not found running: it is paused; resume it with Sandbox.connect()"
                         if paused else f"The sandbox {name} was not found")
