"""The hottest routes, ``POST .../run_in_session``, ``.../create_session`` and, on an admin,
``.../start`` and ``.../start_async``, answered right at the app's own door.

Measured here, FastAPI's routing and middleware layers add ~0.2 ms to a request, as much as
the bash round trip itself; in a burst of starts against 50 simulated nodes they were a third
of the admin's CPU per placement. Even the layers every request passes before any middleware of
ours (FastAPI's telemetry check, Starlette's error, body-limit and exception layers, our metrics
layer's wrapped ``send``) cost ~10 us a command. So the door is the app's ``__call__`` itself
(``DoorApp``), before all of them: it handles those routes with the same models, the same auth,
the same lifecycle calls and the same error mapping as the routed versions
(``routes_data.run_action``, ``routes_data.session_action``, ``routes_sandbox.start_action``), which stay declared for the
schema, and times them into the same metrics; every other request goes through the app as usual.
"""

from __future__ import annotations

import time

from fastapi import FastAPI

from rock.actions.sandbox import SandboxBashAction, SandboxCreateSessionRequest, SandboxStartRequest
from rock.admin.context import PREFIX, Ctx
from rock.admin.errors import status_and_body
from rock.admin.limits import MAX_JSON_BODY
from rock.admin.routes_data import run_action, session_action
from rock.admin.routes_sandbox import start_action
from rock.errors import BadRequest, PayloadTooLarge

RUN_PATH = PREFIX + "/run_in_session"
SESSION_PATH = PREFIX + "/create_session"
START_PATHS = (PREFIX + "/start", PREFIX + "/start_async")
DOOR_PATHS = frozenset((RUN_PATH, SESSION_PATH, *START_PATHS))  # what the metrics label by path (no route object)
_JSON = (b"content-type", b"application/json")


async def _run(ctx: Ctx, action: SandboxBashAction, headers, owner: str | None) -> tuple[bytes, int]:
    return await run_action(ctx, action, owner)


async def _session(ctx: Ctx, req: SandboxCreateSessionRequest, headers, owner: str | None) -> tuple[bytes, int]:
    return await session_action(ctx, req, owner)


async def _start(ctx: Ctx, req: SandboxStartRequest, headers, owner: str | None) -> tuple[bytes, int]:
    return await start_action(ctx, req, headers, owner), 200


class HotPath:
    """Answers ``POST`` to a path in ``routes``; ``metrics`` (rock.admin.metrics.Metrics) times it."""

    def __init__(self, ctx: Ctx, metrics=None):
        self.ctx = ctx
        self.metrics = metrics
        # path -> (the body's model, the action); the start routes exist on an admin only
        self.routes = {RUN_PATH: (SandboxBashAction, _run), SESSION_PATH: (SandboxCreateSessionRequest, _session)}
        if ctx.settings.role == "admin":
            self.routes.update({path: (SandboxStartRequest, _start) for path in START_PATHS})

    async def __call__(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        status = 500
        path = scope["path"]
        model, action = self.routes[path]
        try:
            try:
                # Read as a dict once (names come lowercased, as ASGI says; the first of a repeated
                # one wins, as in starlette's Headers): a start reads five, each a scan there.
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
                owner = self.ctx.auth.principal(headers)  # a caller without a token learns nothing more
                declared = headers.get("content-length")
                if declared is not None and (not declared.isdigit() or int(declared) > MAX_JSON_BODY):
                    raise PayloadTooLarge(f"request body exceeds the limit of {MAX_JSON_BODY} bytes for this route")
                body = await read_body(receive)
                if not body.strip():
                    raise BadRequest(f"request body is empty; expected a JSON object for {model.__name__}")
                payload, status = await action(self.ctx, model.model_validate_json(body), headers, owner)
            except Exception as exc:  # noqa: BLE001 - mapped exactly like the routed handlers do
                status, payload = status_and_body(exc, path)
            await send({"type": "http.response.start", "status": status,
                        "headers": [_JSON, (b"content-length", b"%d" % len(payload))]})
            await send({"type": "http.response.body", "body": payload})
        finally:
            if self.metrics is not None:
                self.metrics.observe("POST", path, status, time.perf_counter() - t0, t0)


class DoorApp(FastAPI):
    """FastAPI with ``door`` (a HotPath) in front of everything, its own layers included, and
    ``prefix_doors``: (path prefix, door) pairs, where a door returns False for a request it
    leaves to the routes (having received and sent nothing)."""

    door: HotPath | None = None
    prefix_doors: tuple = ()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if self.door is not None and scope["method"] == "POST" and path in self.door.routes:
                return await self.door(scope, receive, send)
            for prefix, door in self.prefix_doors:
                if path.startswith(prefix) and await door(scope, receive, send):
                    return None
        return await super().__call__(scope, receive, send)


async def read_body(receive, limit: int = MAX_JSON_BODY) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes for this route")
        parts.append(chunk)
    return b"".join(parts)
