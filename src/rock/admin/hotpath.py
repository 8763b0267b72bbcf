"""The hottest route, ``POST .../run_in_session``, answered right at the ASGI door.

Measured here, FastAPI's routing and middleware layers add ~0.2 ms to a request, as much as
the bash round trip itself. This front door handles that one route with the same model, the
same auth, the same lifecycle calls and the same error mapping as the routed version
(``routes_data.run_action``); every other request passes straight through to the app.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from rock.actions.sandbox import SandboxBashAction
from rock.admin.context import PREFIX, Ctx
from rock.admin.errors import status_and_body
from rock.admin.limits import MAX_JSON_BODY
from rock.admin.routes_data import run_action
from rock.errors import BadRequest, PayloadTooLarge

RUN_PATH = PREFIX + "/run_in_session"
_JSON = [(b"content-type", b"application/json")]


class HotPath:
    def __init__(self, app, ctx: Ctx):
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == RUN_PATH and scope["method"] == "POST":
            return await self._run(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _run(self, scope, receive, send) -> None:
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
                    "headers": _JSON + [(b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


async def read_body(receive) -> bytes:
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
        if size > MAX_JSON_BODY:
            raise PayloadTooLarge(f"request body exceeds the limit of {MAX_JSON_BODY} bytes for this route")
        parts.append(chunk)
    return b"".join(parts)
