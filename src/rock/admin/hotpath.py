"""The hottest route, ``POST .../run_in_session``, answered right at the app's own door.

Measured here, FastAPI's routing and middleware layers add ~0.2 ms to a request, as much as
the bash round trip itself; even the layers every request passes before any middleware of ours
(FastAPI's telemetry check, Starlette's error, body-limit and exception layers, our metrics
layer's wrapped ``send``) cost ~10 us a command. So the door is the app's ``__call__`` itself
(``DoorApp``), before all of them: it handles that one route with the same model, the same auth,
the same lifecycle calls and the same error mapping as the routed version
(``routes_data.run_action``), and times it into the same metrics; every other request goes
through the app as usual.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from starlette.datastructures import Headers

from rock.actions.sandbox import SandboxBashAction
from rock.admin.context import PREFIX, Ctx
from rock.admin.errors import status_and_body
from rock.admin.limits import MAX_JSON_BODY
from rock.admin.routes_data import run_action
from rock.errors import BadRequest, PayloadTooLarge

RUN_PATH = PREFIX + "/run_in_session"
_JSON = (b"content-type", b"application/json")


class HotPath:
    """Answers ``POST RUN_PATH``; ``metrics`` (rock.admin.metrics.Metrics) times it."""

    def __init__(self, ctx: Ctx, metrics=None):
        self.ctx = ctx
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        status = 500
        try:
            try:
                headers = Headers(scope=scope)
                owner = self.ctx.auth.principal(headers)  # a caller without a token learns nothing more
                declared = headers.get("content-length")
                if declared is not None and (not declared.isdigit() or int(declared) > MAX_JSON_BODY):
                    raise PayloadTooLarge(f"request body exceeds the limit of {MAX_JSON_BODY} bytes for this route")
                body = await read_body(receive)
                if not body.strip():
                    raise BadRequest("request body is empty; expected a JSON object for SandboxBashAction")
                action = SandboxBashAction.model_validate_json(body)
                payload, status = await run_action(self.ctx, action, owner)
            except Exception as exc:  # noqa: BLE001 - mapped exactly like the routed handlers do
                status, payload = status_and_body(exc, RUN_PATH)
            await send({"type": "http.response.start", "status": status,
                        "headers": [_JSON, (b"content-length", b"%d" % len(payload))]})
            await send({"type": "http.response.body", "body": payload})
        finally:
            if self.metrics is not None:
                self.metrics.observe("POST", RUN_PATH, status, time.perf_counter() - t0, t0)


class DoorApp(FastAPI):
    """FastAPI with ``door`` (a HotPath) in front of everything, its own layers included, and
    ``prefix_doors``: (path prefix, door) pairs, where a door returns False for a request it
    leaves to the routes (having received and sent nothing)."""

    door: HotPath | None = None
    prefix_doors: tuple = ()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if path == RUN_PATH and scope["method"] == "POST" and self.door is not None:
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
