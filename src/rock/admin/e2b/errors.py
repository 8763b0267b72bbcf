"""E2B's error shapes, in one place: how the door's errors (``rock.errors``' ``E2BError``,
``ConnectError``, ``SandboxGone``) and ROCK's own reach E2B's wire.

- ``E2BError``: the control plane's and envd's ``/files`` as ``{"code": <status>, "message"}``
  (``Retry-After`` for a rate); the code interpreter's routes (``INTERPRETER_PATHS``) in plain text.
- ``ConnectError``: a unary RPC as ``{"code": "<connect code>", "message"}`` under the code's
  status (``rock.errors.STATUS``); a server stream ends with it in its last message, under 200.
- ``SandboxGone``: E2B's edge proxy's 502 ``{"code": 502, "message", "sandboxId": null}``; inside
  a stream, Connect's ``unavailable`` (``end_of_stream``).
- ROCK's errors: ``from_rock`` (for envd: a Connect code by the agent's kind or the status) and
  ``refusal`` (for the control plane: an ``E2BError`` with the status E2B gives a service refusal).

``HANDLERS`` is what the door's ``FRONT`` installs."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response

from rock.admin.e2b.framing import END_STREAM, envelope, json_response
from rock.errors import (AgentError, AgentGone, AgentTimeout, ConnectError, E2BError, Refused, RockError,
                         SandboxGone, SandboxNotFound, SandboxNotRunning, SandboxPaused, status_of)

# The code interpreter's routes (its own server in E2B, on port 49999): refusals in plain text.
INTERPRETER_PATHS = ("/execute", "/contexts")
# The agent's error kinds (rock.agent.errors) as Connect codes.
CODE_OF_KIND = {"FileNotFound": "not_found", "NotFound": "not_found", "FileExists": "already_exists",
                "IsADirectory": "invalid_argument", "NotADirectory": "invalid_argument", "BadRequest": "invalid_argument",
                "PermissionDenied": "permission_denied", "Unauthenticated": "unauthenticated",
                "NoSpace": "resource_exhausted", "DirectoryNotEmpty": "failed_precondition",
                "PayloadTooLarge": "resource_exhausted", "Overflow": "resource_exhausted"}
# A ROCK error's status as a Connect code (else internal for a 5xx, invalid_argument below it).
CODE_OF_STATUS = {401: "unauthenticated", 403: "permission_denied", 404: "not_found", 409: "already_exists",
                  413: "resource_exhausted", 507: "resource_exhausted"}
_E2B_SHAPED = (E2BError, ConnectError, SandboxGone)


def from_rock(exc: Exception, sandbox_id: str | None = None) -> Exception:
    """An error met on envd's data plane as E2B says it: a sandbox that went away is
    ``SandboxGone``; a ROCK or agent error a ``ConnectError``; one in E2B's terms already, or not
    ROCK's, unchanged."""
    if isinstance(exc, _E2B_SHAPED):
        return exc
    if isinstance(exc, SandboxPaused):  # paused between the lookup and the call
        return SandboxGone(sandbox_id, paused=True)
    if isinstance(exc, (SandboxNotFound, SandboxNotRunning, AgentGone)):
        return SandboxGone(sandbox_id)
    if isinstance(exc, AgentTimeout):
        return ConnectError("deadline_exceeded", exc.message)
    if isinstance(exc, AgentError):
        return ConnectError(CODE_OF_KIND.get(exc.kind, "internal"), exc.message)
    if isinstance(exc, RockError):  # a ROCK error class the agent client re-raised (e.g. PayloadTooLarge)
        code = CODE_OF_STATUS.get(exc.status_code)
        return ConnectError(code or ("internal" if exc.status_code >= 500 else "invalid_argument"), exc.message)
    return exc


def refusal(exc: RockError, fault: int = 500) -> E2BError:
    """A service's refusal on the control plane: its own status below 500, ``fault`` for a server
    fault; admission's refusal (a node with no room, a rate) keeps its status and ``Retry-After``.
    One in E2B's terms already is unchanged."""
    if isinstance(exc, E2BError):
        return exc
    status = exc.status_code if exc.status_code < 500 or isinstance(exc, Refused) else fault
    return E2BError(status, exc.message or exc.kind, getattr(exc, "retry_after", None))


def connect_body(exc: ConnectError) -> dict:
    """A Connect error's JSON, in a unary answer and a stream's end message alike."""
    return {"code": exc.code, "message": exc.message}


def end_of_stream(exc: ConnectError | SandboxGone | None = None) -> bytes:
    """A server stream's last envelope: ``{}``, or the error it ends with (a sandbox gone
    mid-stream is Connect's ``unavailable``)."""
    if exc is None:
        return envelope({}, END_STREAM)
    if isinstance(exc, SandboxGone):
        exc = ConnectError("unavailable", exc.message)
    return envelope({"error": connect_body(exc)}, END_STREAM)


def gone_response(exc: SandboxGone) -> Response:
    """E2B's edge proxy's answer for a sandbox that is not there."""
    return json_response({"code": 502, "message": exc.message, "sandboxId": None}, 502)


def connect_response(exc: ConnectError) -> Response:
    """A unary RPC's failure: the Connect error under its code's HTTP status."""
    return json_response(connect_body(exc), status_of(exc.code))


def e2b_response(request: Request, exc: E2BError) -> Response:
    """A refusal as E2B answers it there: the code interpreter's in plain text, else ``{code, message}``."""
    if request.url.path.startswith(INTERPRETER_PATHS):
        return Response(exc.message, status_code=exc.status_code, media_type="text/plain")
    out = json_response({"code": exc.status_code, "message": exc.message}, exc.status_code)
    if exc.retry_after is not None:
        out.headers["Retry-After"] = f"{math.ceil(exc.retry_after)}"
    return out


async def _e2b_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, E2BError)
    return e2b_response(request, exc)


async def _sandbox_gone(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxGone)
    return gone_response(exc)


async def _connect_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConnectError)
    if request.headers.get("content-type", "").startswith("application/connect+"):
        # a stream's error travels in its end-of-stream message, under 200
        return Response(end_of_stream(exc), media_type="application/connect+json")
    return connect_response(exc)


HANDLERS = ((E2BError, _e2b_error), (SandboxGone, _sandbox_gone), (ConnectError, _connect_error))
