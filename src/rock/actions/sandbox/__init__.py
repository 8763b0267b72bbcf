"""Wire bodies of the sandbox routes: ROCK's shapes (each carries ``sandbox_id``) and our additions.

ROCK-shaped bodies ignore unknown fields (rl-rock sends many we do not use, e.g. ``image_os``,
``use_kata_runtime``); our own additions reject them, so a typo is an error, not a no-op.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.config import JsonDict

from rock.actions.egress import HOST_PATTERN, EgressSpec
from rock.actions.secrets import NAME_PATTERN as SECRET_NAME_PATTERN
from rock.actions.numbers import numbers_only
from rock.actions.sizes import SIZE_PATTERN, parse_memory  # noqa: F401 - the request models' names
from rock.actions.request import BashAction, CloseBashSessionRequest, Command, CreateBashSessionRequest
from rock.actions.request import ReadFileRequest, SandboxPath, WriteFileRequest
from rock.actions.volumes import VolumeMount

SECRET_HOST_PATTERN = rf"^{HOST_PATTERN}$"

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_ID = re.compile(ID_PATTERN)


def _check_id(value: str) -> str:
    if not _ID.fullmatch(value):  # fullmatch: '$' alone would let "id\n" through
        raise ValueError("must be 1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit")
    return value


# The check is ours (its message names the rule); the schema states the same rule for clients.
SandboxId = Annotated[str, AfterValidator(_check_id), WithJsonSchema({"type": "string", "pattern": ID_PATTERN})]

# An environment variable as execve and setenv(3) take it: a name is not empty and has no '=';
# neither has a NUL. Nor a lone surrogate (JSON's escapes can carry one, no C string can): the
# check refuses it, the schema's patterns cannot say it (a lone surrogate is not text; the
# fuzzer's regex engine refuses the range) and ROCK's JSON parser refuses such a body anyway.
ENV_NAME_PATTERN = "^[^=\\x00]+$"
ENV_VALUE_PATTERN = "^[^\\x00]*$"
_ENV_NAME = re.compile("^[^=\\x00\\ud800-\\udfff]+$")
_ENV_VALUE = re.compile("^[^\\x00\\ud800-\\udfff]*$")


def check_env(env: dict[str, str] | None) -> dict[str, str] | None:
    """``env`` if every name and value can be a process's environment, else ValueError naming it
    (bwrap's --setenv of an empty name failed the start as the engine's 503)."""
    for name, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"environment variable name {name!r}: not empty, without '=', NUL or lone surrogates")
        if not _ENV_VALUE.fullmatch(value):
            raise ValueError(f"environment variable {name!r}: its value may not hold a NUL or a lone surrogate")
    return env


# patternProperties, not propertyNames: Schemathesis' generator ignored propertyNames' pattern
EnvVars = Annotated[dict[str, str], AfterValidator(check_env), WithJsonSchema({
    "type": "object", "patternProperties": {ENV_NAME_PATTERN: {"type": "string", "pattern": ENV_VALUE_PATTERN}},
    "additionalProperties": False})]
SessionName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00/]+$")]


class _Ours(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _filled(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}


def _set(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "integer"}}}


# What ``rock.admin.sandboxes.start_checks`` refuses of the fields together, said in the schema too.
_START_RULES: JsonDict = {"allOf": [
    {"if": _filled("registry_username"), "then": _filled("registry_password")},  # a login is both or neither
    {"if": _filled("registry_password"), "then": _filled("registry_username")},
    {"not": {"allOf": [_set("auto_archive_seconds"), _set("auto_delete_seconds")]}},  # one or the other
]}


class SandboxStartRequest(_Ours):
    """Every field rl-rock 1.11 sends, and ours. An unknown field is refused (naming it), never
    dropped; a known one the machine cannot honour is refused by ``rock.admin.sandboxes.start_checks``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_START_RULES)

    image: str | None = None
    image_os: Annotated[str, WithJsonSchema({"type": "string", "pattern": "^\\s*[Ll][Ii][Nn][Uu][Xx]\\s*$",
                                             "default": "linux"})] = "linux"  # Linux sandboxes only
    memory: Annotated[str, WithJsonSchema({"type": "string", "pattern": SIZE_PATTERN})] | None = None
    # 0.01: the smallest CPU quota the kernel takes (1 ms per 100 ms period); less is EINVAL
    cpus: float | None = Field(default=None, ge=0.01, le=1024)
    limit_cpus: float | None = Field(default=None, ge=0.01, le=1024)
    num_gpus: float | None = Field(default=None, ge=0)
    accelerator_type: str | None = None  # a node label a GPU sandbox's node must carry
    node_selector: dict[str, str] | None = None  # ours: labels the node must carry (cluster)
    # a limit on what the sandbox writes, e.g. "50G" (enforced by the admin); on a cluster also
    # the disk the node must have free for it (placement)
    disk: Annotated[str, WithJsonSchema({"type": "string", "pattern": SIZE_PATTERN, "minLength": 1})] | None = None
    # With tokens on, the sandbox gets "<id>.<10 hex>" of the caller's namespace (the reply's
    # sandbox_id: use that one afterwards); the same id again is the same sandbox (idempotent).
    sandbox_id: SandboxId | None = Field(default=None, description=(
        "an id of the caller's choosing; with tokens on it is namespaced: the sandbox's id is "
        "'<id>.<10 hex>' (the reply's sandbox_id), and another token's same id is another sandbox"))
    # At least a second: a start is a process or a container and an agent's first answer; a
    # shorter wait could only time out (a 503 the caller asked for), so it is refused up front.
    startup_timeout: float | None = Field(default=None, ge=1, le=86400, description=(
        "seconds the start may take before it is abandoned (1 to 86400)"))
    auto_clear_time: int | None = Field(default=None, ge=0)  # rl-rock's older name of the minutes
    auto_clear_time_minutes: int | None = Field(default=None, ge=0)
    auto_clear_seconds: int | None = Field(default=None, ge=0)  # ours: exact TTL, wins over minutes
    auto_archive_seconds: int | None = Field(default=None, ge=0)  # after a stop: archive this much later
    auto_delete_seconds: int | None = Field(default=None, ge=0)  # after a stop: delete this much later
    registry_username: str | None = Field(default=None, exclude=True)  # a login for the pull; never stored
    registry_password: str | None = Field(default=None, exclude=True)
    use_kata_runtime: bool = False
    pull_policy: Literal["missing", "always", "never"] = "missing"  # ours
    network: bool = False  # ours: sandboxes have no network unless asked
    egress: EgressSpec | None = Field(default=None, description=(
        "ours: the sandbox's egress policy: 'none', 'all' (but never the host, the admin or other "
        "sandboxes) or rules {default, allow, deny, ports}; its network goes out only through the "
        "admin's gate and resolver. Not with network=true"))
    env: EnvVars | None = None  # ours: environment of every process in the sandbox
    secrets: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")],
                  Annotated[str, Field(pattern=SECRET_NAME_PATTERN)]] | None = Field(default=None, max_length=64, description=(
        "ours: environment variable -> the name of a secret of the caller's (POST /secrets): the variable "
        "holds a placeholder, and the egress relay sends the value in its place to the secret's hosts "
        "only. Needs an egress policy"))
    egress_headers: dict[Annotated[str, Field(pattern=SECRET_HOST_PATTERN)],
                         dict[Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")],
                              Annotated[str, Field(max_length=16384, pattern=r"^[^\r\n\x00]*$")]]] | None = Field(
        default=None, max_length=64, description=(
            "ours (E2B's network.rules transforms): host -> headers the egress relay sets on every request to "
            "that host; '${e2b.secrets.<name>}' in a value is the caller's secret. Needs an egress policy"))
    wait: bool | None = None  # ours: on /start_async, reply only once the sandbox is ready
    # ours: start from a snapshot (the name its snapshot reply gave): its image, limits and files
    snapshot: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description=(
        "a snapshot's name (as its snapshot reply gave it): the sandbox starts on its files (and, "
        "full, its processes), image and limits; the request's image, memory and cpus are not used"))
    # ours, E2B's lifecycle: at the idle timeout stop (ROCK's) or pause (memory kept, resumable)
    on_timeout: Literal["stop", "pause"] | None = Field(default=None, description=(
        "what the idle timeout does: stop (the default) or pause"))
    auto_resume: bool | None = Field(default=None, description=(
        "a call to the paused sandbox resumes it first (otherwise it is refused with 409 until resumed)"))
    volumes: list[VolumeMount] | None = Field(default=None, max_length=16, description=(
        "volumes of yours mounted at start, each at its own path (read-only with read_only)"))

    # JSON's true/false are not 1/0 here (the schema says integer; lax parsing took false as 0)
    _numbers = numbers_only("auto_clear_time", "auto_clear_time_minutes", "auto_clear_seconds",
                            "auto_archive_seconds", "auto_delete_seconds", "startup_timeout", "cpus", "limit_cpus",
                            "num_gpus")

    @field_validator("disk")
    @classmethod
    def _disk(cls, v: str | None) -> str | None:
        if v is not None and parse_memory(v) is None:
            raise ValueError("disk must be a size like '20G'")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or len(v) > 512):
            raise ValueError("image must be a non-empty image name")
        return v

    @field_validator("memory", "disk")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        parse_memory(v)
        return v

    def ttl_seconds(self) -> int | None:
        """How long the sandbox may live, in seconds: ``auto_clear_seconds`` if set, else the minutes of
        ``auto_clear_time_minutes`` (or its older name ``auto_clear_time``); None when none is set (the admin's
        default applies)."""
        if self.auto_clear_seconds is not None:
            return self.auto_clear_seconds
        minutes = self.auto_clear_time_minutes if self.auto_clear_time_minutes is not None else self.auto_clear_time
        return None if minutes is None else minutes * 60


class SandboxIdRequest(_Compat):
    """Names one sandbox (stop, delete, and other routes that need only the id)."""

    sandbox_id: SandboxId


class SandboxCommand(Command):
    """Run a one-shot command in the sandbox (POST /execute): a string is a shell command line, a list an argv.
    ``timeout`` is in seconds; past it the command is killed and the reply says ``timed_out``. ``check`` is
    accepted for rl-rock and not used: the exit code is returned either way."""

    sandbox_id: SandboxId
    shell: bool = False
    check: bool = False
    timeout: float | None = Field(default=1200, gt=0)


class SandboxCreateSessionRequest(CreateBashSessionRequest):
    """Open a named bash session in the sandbox; ``cwd`` (ours) is the directory it starts in."""

    sandbox_id: SandboxId
    session: SessionName = "default"
    cwd: SandboxPath | None = None  # ours


class SandboxBashAction(BashAction):
    """Run a command in one of the sandbox's sessions and wait for it. ``timeout`` (seconds) ends it;
    ``idle_timeout`` (ours) returns with status ``idle`` once no new output came for that long, leaving the
    command running; ``max_output`` (ours, bytes) caps the output kept; ``error_msg`` prefixes the failure
    reason. ``check="raise"``: a non-zero exit answers status Failed with code 6000 (the SDK raises)."""

    sandbox_id: SandboxId
    session: SessionName = "default"
    timeout: float | None = Field(default=None, gt=0)
    idle_timeout: float | None = Field(default=None, gt=0)  # ours: return "idle" instead of blocking
    max_output: int | None = Field(default=None, gt=0)  # ours
    error_msg: str = ""


class SandboxCloseSessionRequest(CloseBashSessionRequest):
    """Close one of the sandbox's sessions."""

    sandbox_id: SandboxId
    session: SessionName = "default"


class SandboxReadFileRequest(ReadFileRequest):
    """Read a text file in the sandbox."""

    sandbox_id: SandboxId


class SandboxWriteFileRequest(WriteFileRequest):
    """Write a text file in the sandbox, replacing it."""

    sandbox_id: SandboxId


class RestartRequest(_Compat):
    """Start a stopped (or archived) sandbox again, with its files."""

    sandbox_id: SandboxId


class CommitRequest(_Compat):
    """Save the sandbox's files as image ``image_tag``, in the background; pushed with the login given when the tag
    names a registry. Poll GET /commit/{sandbox_id} for the outcome."""

    sandbox_id: SandboxId
    image_tag: str = Field(min_length=1, max_length=512, description="<registry>/<repository>:<tag>; pushed when "
                           "it names a registry")
    username: str | None = Field(default=None, description="registry login for the push")
    password: str | None = None


class BatchStatusRequest(_Compat):
    """The status of up to 1000 sandboxes in one call."""

    sandbox_ids: list[SandboxId] = Field(max_length=1000)


# -- our additions --------------------------------------------------------------------------


class SessionRequest(_Ours):
    """Names one session of one sandbox."""

    sandbox_id: SandboxId
    session: SessionName


class SendInputRequest(SessionRequest):
    """Type ``data`` into the session's terminal, as is (add a newline to end a line); does not wait for output."""

    data: str = Field(max_length=1 << 20)


class InterruptRequest(SessionRequest):
    """Interrupt the session's command (Ctrl-C) and wait for it to end; if it still runs after ``grace`` seconds
    (default: the agent's), what it started is killed. A session with nothing running replies ``idle``."""

    grace: float | None = Field(default=None, ge=0, le=60)


class WaitSessionRequest(SessionRequest):
    """Wait again for the command running in the session (after an ``idle`` return). ``timeout`` (seconds)
    ends the command, as a run's timeout does; ``idle_timeout`` returns with status ``idle`` once no new
    output came for that long, leaving it running. A session with nothing running is a 400."""

    timeout: float | None = Field(default=None, gt=0)
    idle_timeout: float | None = Field(default=None, gt=0)


class ProcStartRequest(_Ours):
    """Start a background process in the sandbox (ours): a string is a shell command line, a list an argv. ``name``
    is a label for listings. The reply carries its ``proc_id``; read its output and status with /procs/output
    and /procs/status."""

    sandbox_id: SandboxId
    command: str | list[str]
    shell: bool = False
    env: dict[str, str] | None = None
    cwd: SandboxPath | None = None
    name: str | None = None


class ProcRequest(_Ours):
    """Names one background process of the sandbox."""

    sandbox_id: SandboxId
    proc_id: str = Field(min_length=1, max_length=128)


class ProcKillRequest(ProcRequest):
    """Send ``signal`` (default 15, SIGTERM) to a background process."""

    signal: int = Field(default=15, ge=1, le=64)
