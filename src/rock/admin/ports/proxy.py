"""HTTP to a port inside a sandbox: what the proxy routes do, and the same at the app's own door.

``Forwarder`` is the work itself (target, headers, the kept-alive request, the answer as an ASGI
response), shared by the routed endpoints (rock.admin.ports.routes) and their door.

The door (``claim`` and ``forward``, attached to the routed endpoints, see rock.admin.doors)
answers ``.../sandboxes/{id}/proxy[/{path}]`` before FastAPI's layers, routing and parameter
handling, which measured ~0.3 ms of the admin's CPU per proxied request here, more than the
command round trip's whole share. It takes only the plain case: a known method, a valid port, a
caller and sandbox that check out, a body of declared size within the route's limit. Anything
else it leaves untouched (nothing received, nothing sent) to the routed endpoints, which answer
it exactly as before: the errors, their shapes and the schema stay theirs.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse

from rock.admin.ports import client, relay
from rock.admin.context import Ctx
from rock.admin.errors import error_body
from rock.admin.limits import limit_for
from rock.errors import RockError

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
# What the server's answer keeps: its own framing (content-length) where it gave one.
ANSWER_DROPS = relay.HOP_BY_HOP - {"content-length"}


class Forwarder:
    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.read_timeout = ctx.settings.proxy_timeout
        self.pools = client.Pools(ctx.settings.proxy_keepalive_connections, ctx.settings.proxy_keepalive_seconds)

    async def forward(self, agent, port: int, method: str, rest: str, query: str, headers: Headers,
                      body: bytes, sandbox_id: str) -> Response:
        """One request to the server on ``port`` (``query``: the caller's raw query string), its
        answer as a response (502 if it misbehaves)."""
        tail = relay.forwarded_query(query)
        target = "/" + rest + (f"?{tail}" if tail else "")
        sent = relay.forwarded_headers(headers.items(), self.ctx.auth.enabled)
        try:
            answer = await client.request(self.pools, agent, port, method, target, sent, body, self.read_timeout)
        except RockError:
            raise
        except Exception as exc:  # noqa: BLE001 - the server in the sandbox misbehaved (or never answered)
            message = (f"the server on port {port} in sandbox {sandbox_id} did not answer properly: "
                       f"{type(exc).__name__}: {exc}")
            return Response(error_body(502, message, "BadGateway"), status_code=502, media_type="application/json")
        out = [(k.lower(), v) for k, v in answer.headers if k.decode("latin-1").lower() not in ANSWER_DROPS]
        if answer.complete:  # the whole answer came with its head (most do): sent as it is, at once
            await answer.aclose()
            response = Response(answer.body, status_code=answer.status)
            if (method != "HEAD" and answer.status not in (204, 304)
                    and not any(k == b"content-length" for k, _ in out)):
                out.append((b"content-length", b"%d" % len(answer.body)))
            response.raw_headers = out
            return response

        async def stream():
            try:
                async for chunk in answer.chunks():
                    yield chunk
            finally:
                await answer.aclose()

        response = StreamingResponse(stream(), status_code=answer.status)
        response.raw_headers = out
        return response


async def claim(ctx: Ctx, principal, call):
    """The plain proxy request the door may take: (port, path in the sandbox, agent); None for
    anything the routed endpoint answers in its own words (odd methods and paths, a port that is
    not a number, a chunked body or one past the route's limit, a caller or sandbox that does not
    check out)."""
    scope = call.scope
    if scope["method"] not in METHODS or "\n" in scope["path"]:
        return None
    headers = call.headers
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    wanted = [v for k, v in query if k == "rock_target_port"]
    declared = headers.get("content-length")
    if (wanted and not wanted[-1].isdigit()) or "transfer-encoding" in headers or (
            declared is not None and (not declared.isdigit() or int(declared) > limit_for(scope["path"]))):
        return None  # the routes' own parameter checks and body limits answer these
    port, rest = relay.resolve_target(headers, wanted[-1] if wanted else None, call.params.get("path", ""))
    return port, rest, await ctx.sandboxes.agent(call.params["sandbox_id"], principal)


async def forward(forwarder: Forwarder, call) -> Response:
    """The door's answer to a claimed proxy request: the server's, as the routed endpoint gives it."""
    port, rest, agent = call.claimed
    scope = call.scope
    declared = call.headers.get("content-length")
    body = await call.read_body() if declared not in (None, "0") else b""
    return await forwarder.forward(agent, port, scope["method"], rest, relay.raw_query(scope),
                                   Headers(scope=scope), body, call.params["sandbox_id"])
