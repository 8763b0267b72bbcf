"""The one place where exceptions become HTTP responses.

Every error answers with ROCK's envelope ``{"status": "Failed", "message", "error", "result"}``
and a real 4xx/5xx status. ``result`` carries ROCK's code class (4000 client, 5000 server) and,
ours, ``error_type``: the rock.errors class name, so the SDK re-raises the same type. Nothing
from a traceback ever reaches the client; unexpected errors are logged here instead.
"""

from __future__ import annotations

import errno
import logging
import math
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from rock.jsonutil import dumps
from rock.errors import RockError

log = logging.getLogger("rock.admin")

# ROCK's code classes (rock._codes in rl-rock): the SDK raises by class, not by HTTP status.
CODE_CLIENT, CODE_SERVER, CODE_COMMAND = 4000, 5000, 6000


def error_body(status_code: int, message: str, error_type: str, detail: str | None = None) -> bytes:
    """ROCK's failure envelope as JSON bytes: status Failed, the message, and in ``result`` ROCK's code class (4000
    below HTTP 500, else 5000) and ``error_type``, the rock.errors class name the SDK re-raises. ``detail``
    replaces the message in ``error`` when given."""
    code = CODE_CLIENT if status_code < 500 else CODE_SERVER
    return dumps({
        "status": "Failed",
        "message": message,
        "error": detail or message,
        "result": {"code": code, "failure_reason": message, "error_type": error_type},
    })


def error_response(status_code: int, message: str, error_type: str, headers: dict | None = None) -> Response:
    """``error_body`` as a response with that HTTP status (and ``headers``, e.g. Allow on a 405)."""
    return Response(error_body(status_code, message, error_type), status_code=status_code,
                    media_type="application/json", headers=headers)


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query")]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic's errors (the first ten): each field's dotted location and what is wrong with it, or
    that the body is not JSON."""
    parts = []
    for e in errors[:10]:
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            parts.append("request body is not valid JSON")
            continue
        parts.append(f"{_loc(tuple(e.get('loc', ())))}: {msg}")
    return "invalid request: " + "; ".join(parts)


def status_and_body(exc: Exception, where: str = "") -> tuple[int, bytes]:
    """The mapping itself, for the routes' handlers and for the hot path alike."""
    if isinstance(exc, RockError):
        kind = exc.kind
        return exc.status_code, error_body(exc.status_code, exc.message or kind, kind)
    if isinstance(exc, RequestValidationError):
        return 422, error_body(422, validation_message(list(exc.errors())), "BadRequest")
    if isinstance(exc, ValidationError):
        return 422, error_body(422, validation_message(exc.errors(include_url=False)), "BadRequest")
    full = _disk_full(exc)
    if full:
        log.error("out of disk space on %s: %s", where, full)
        return 507, error_body(507, f"the admin's machine is out of disk space ({full}); free space under its "
                                    "state directory and try again", "InsufficientStorage")
    log.error("unexpected error on %s", where, exc_info=exc)
    return 500, error_body(500, f"internal error ({type(exc).__name__}); see the admin log", "RockError")


def socket_error(exc: Exception) -> dict:
    """A WebSocket's error frame (ROCK's streams, the Chat trainer's socket): the status and kind a route
    would answer, as a JSON message; an unexpected error is logged here and named only by its type."""
    if isinstance(exc, ValidationError):
        return {"type": "error", "status_code": 422, "error_type": "BadRequest",
                "message": validation_message(exc.errors(include_url=False))}
    if isinstance(exc, RockError):
        kind = exc.kind
        return {"type": "error", "status_code": exc.status_code, "error_type": kind, "message": exc.message or kind}
    log.exception("unexpected error on the stream socket")
    return {"type": "error", "status_code": 500, "error_type": "RockError",
            "message": f"internal error ({type(exc).__name__}); see the admin log"}


def _disk_full(exc: BaseException) -> str | None:
    """What a full disk under the admin looks like, from the OS or from SQLite; else None."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror)
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return f"its record store: {exc}"
    return None


def retry_after(exc: Exception) -> dict[str, str]:
    """``Retry-After`` for a refusal that says when to come back (a create rate's 429), else nothing."""
    after = getattr(exc, "retry_after", None)
    return {} if after is None else {"Retry-After": f"{math.ceil(after)}"}


async def _respond(request: Request, exc: Exception) -> Response:
    # A coroutine: Starlette runs a plain function handler in its thread pool, a thread hop for
    # every 4xx a routed request answers.
    status, body = status_and_body(exc, f"{request.method} {request.url.path}")
    return Response(body, status_code=status, media_type="application/json", headers=retry_after(exc))


_PROBE = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route serves on this path: asked of the router itself (included routers
    hide their routes behind one entry, and the proxy path has one route per method)."""
    from starlette.routing import Match

    routes = request.app.router.routes
    return [m for m in _PROBE
            if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)]


def install(app: FastAPI) -> None:
    """Make every error on ``app`` answer with ROCK's failure envelope: RockError with its own status, validation
    errors as 422, Starlette's 404/405/413/401 with a message naming the route (and the allowed methods on a
    405), a full disk as 507, anything else as a logged 500."""
    app.add_exception_handler(RockError, _respond)
    app.add_exception_handler(RequestValidationError, _respond)
    app.add_exception_handler(ValidationError, _respond)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kinds = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 401: "Unauthorized"}
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        if exc.status_code == 405:
            # RFC 9110: a 405 lists what the path does allow; Starlette names only the first
            # route that matched the path, and one path may have a route per method (the proxy).
            headers["Allow"] = ", ".join(allowed_methods(request))
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
        return error_response(exc.status_code, message, kinds.get(exc.status_code, "BadRequest"), headers)

    app.add_exception_handler(Exception, _respond)
