"""The hottest routes, ``POST .../run_in_session`` and, on an admin, ``.../start`` and
``.../start_async``, answered right at the ASGI door.

Measured here, FastAPI's routing and middleware layers add ~0.2 ms to a request, as much as
the bash round trip itself; in a burst of starts against 50 simulated nodes they were a third
of the admin's CPU per placement. This front door handles those routes with the same models,
the same auth, the same lifecycle calls and the same error mapping as the routed versions
(``routes_data.run_action``, ``routes_sandbox.start_action``), which stay declared for the
schema; every other request passes straight through to the app.
"""

from __future__ import annotations

from rock.actions.sandbox import SandboxBashAction, SandboxStartRequest
from rock.admin.context import PREFIX, Ctx
from rock.admin.errors import status_and_body
from rock.admin.limits import MAX_JSON_BODY
from rock.admin.routes_data import run_action
from rock.admin.routes_sandbox import start_action
from rock.errors import BadRequest, PayloadTooLarge

RUN_PATH = PREFIX + "/run_in_session"
START_PATHS = (PREFIX + "/start", PREFIX + "/start_async")
DOOR_PATHS = frozenset((RUN_PATH, *START_PATHS))  # what the metrics label by path (no route object)
_JSON = [(b"content-type", b"application/json")]


async def _run(ctx: Ctx, action: SandboxBashAction, headers, owner: str | None) -> tuple[bytes, int]:
    return await run_action(ctx, action, owner)


async def _start(ctx: Ctx, req: SandboxStartRequest, headers, owner: str | None) -> tuple[bytes, int]:
    return await start_action(ctx, req, headers, owner), 200


class HotPath:
    def __init__(self, app, ctx: Ctx):
        self.app = app
        self.ctx = ctx
        # path -> (the body's model, the action); the start routes exist on an admin only
        self.routes = {RUN_PATH: (SandboxBashAction, _run)}
        if ctx.settings.role == "admin":
            self.routes.update({path: (SandboxStartRequest, _start) for path in START_PATHS})

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.routes.get(scope["path"])
            if route is not None:
                return await self._answer(scope, receive, send, *route)
        return await self.app(scope, receive, send)

    async def _answer(self, scope, receive, send, model, action) -> None:
        try:
            # Read as a dict once (names come lowercased, as ASGI says; the first of a repeated one
            # wins, as in starlette's Headers): a start reads five, each a scan and a KeyError there.
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
            status, payload = status_and_body(exc, scope["path"])
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
