"""ROCK's port routes: HTTP and WebSocket to a port inside a sandbox, raw TCP over WebSocket.

    /sandboxes/{id}/proxy[/{path}]   any method; the port from X-ROCK-Target-Port, rock_target_port
                                     or a path starting with port/<n>/; a WebSocket upgrade on the
                                     same path is carried as WebSocket
    /sandboxes/{id}/portforward?port=N   WebSocket: binary messages are the TCP byte stream
Works for sandboxes without a network: the agent inside connects on the sandbox's loopback.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Header, Path, Query
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from rock.actions.response import RockResponse
from rock.admin.ports import relay
from rock.admin.ports.proxy import METHODS as PROXY_METHODS, Forwarder, claim, forward
from rock.admin.context import Ctx
from rock.admin.doors import attach
from rock.errors import BadRequest, RockError

log = logging.getLogger("rock.admin.ports")
METHODS = list(PROXY_METHODS)
ERRORS = {code: {"model": RockResponse[dict], "description": text} for code, text in (
    (400, "no target port, or more than one, or not a port number"), (404, "no such sandbox"),
    (409, "the sandbox is not running"), (502, "nothing listens on that port inside the sandbox"))}
PROXY_DOC = dict(
    responses={200: {"description": "whatever the server inside the sandbox answers (status, headers, body)"},
               101: {"description": "WebSocket upgrade: messages are carried both ways"}, **ERRORS},
    summary="Forward an HTTP request (or a WebSocket) to a port inside the sandbox",
    tags=["ports"],
    openapi_extra={"requestBody": {"required": False, "description": "passed to the server as it is",
                                   "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}},
)
TargetQuery = Query(default=None, description="the port inside the sandbox (or send the X-ROCK-Target-Port "
                    "header, or start the path with port/<n>/)")
TargetHeader = Header(default=None, alias="X-ROCK-Target-Port", description="the port inside the sandbox")


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    forwarder = Forwarder(ctx)

    async def _http(request: Request, sandbox_id: str, path: str) -> Response:
        port, rest = relay.resolve_target(request.headers, request.query_params.get("rock_target_port"), path)
        agent = await ctx.agent(request, sandbox_id)
        return await forwarder.forward(agent, port, request.method, rest, relay.raw_query(request.scope),
                                       request.headers, await request.body(), sandbox_id)

    async def proxy(request: Request, sandbox_id: str = Path(min_length=1), path: str = Path(),
                    rock_target_port: int | None = TargetQuery, x_rock_target_port: str | None = TargetHeader):
        return await _http(request, sandbox_id, path)

    async def proxy_root(request: Request, sandbox_id: str = Path(min_length=1),
                         rock_target_port: int | None = TargetQuery, x_rock_target_port: str | None = TargetHeader):
        return await _http(request, sandbox_id, "")

    async def fast(ctx, body, principal, call) -> Response:  # the plain case, at the app's door
        return await forward(forwarder, call)

    for endpoint in (proxy, proxy_root):  # its connections are the routed endpoints'
        attach(endpoint, fast, claim)
    for method in METHODS:  # one route per method: each gets its own operation id in the schema
        for suffix, endpoint in (("", proxy_root), ("/{path:path}", proxy)):
            api.add_api_route(f"/sandboxes/{{sandbox_id}}/proxy{suffix}", endpoint, methods=[method],
                              operation_id=f"proxy{'_path' if suffix else ''}_{method.lower()}", **PROXY_DOC)

    async def _ws(ws: WebSocket, sandbox_id: str, path: str) -> None:
        try:
            port, rest = relay.resolve_target(ws.headers, ws.query_params.get("rock_target_port"), path)
            agent = await ctx.agent(ws, sandbox_id)
        except RockError as exc:
            await ws.close(code=1008, reason=(exc.message or type(exc).__name__)[:120])
            return
        query = relay.forwarded_query(relay.raw_query(ws.scope))
        try:
            await relay.websocket_proxy(ws, agent, port, "/" + rest + (f"?{query}" if query else ""),
                                        ctx.auth.enabled)
        except RockError as exc:
            await ws.close(code=1011, reason=(exc.message or type(exc).__name__)[:120])

    @api.websocket("/sandboxes/{sandbox_id}/proxy")
    async def ws_proxy_root(ws: WebSocket, sandbox_id: str):
        await _ws(ws, sandbox_id, "")

    @api.websocket("/sandboxes/{sandbox_id}/proxy/{path:path}")
    async def ws_proxy(ws: WebSocket, sandbox_id: str, path: str):
        await _ws(ws, sandbox_id, path)

    @api.websocket("/sandboxes/{sandbox_id}/portforward")
    async def portforward(ws: WebSocket, sandbox_id: str):
        try:
            port = relay.parse_port(ws.query_params.get("port"), "port")
            agent = await ctx.agent(ws, sandbox_id)
        except RockError as exc:
            await ws.accept()  # then close: the reason reaches the client
            await ws.close(code=1008, reason=(exc.message or type(exc).__name__)[:120])
            return
        log.info("port forward to sandbox %s port %d", sandbox_id, port)
        await relay.tcp_over_websocket(ws, agent, port)

    @api.get("/sandboxes/{sandbox_id}/portforward", tags=["ports"], status_code=426, responses={
        426: {"model": RockResponse[dict], "description": "this route is a WebSocket: connect with an Upgrade; "
              "each binary message is bytes of one TCP connection to the port inside the sandbox"}, **ERRORS},
        summary="Raw TCP to a port inside the sandbox, as a WebSocket (binary messages)")
    async def portforward_doc(sandbox_id: str = Path(min_length=1),
                              port: int = Query(ge=1, le=65535, description="the TCP port inside the sandbox")):
        raise _Upgrade()

    return api


class _Upgrade(BadRequest):
    status_code = 426

    def __init__(self):
        super().__init__("this route is a WebSocket: connect with an Upgrade (e.g. websockets.connect(url))")
