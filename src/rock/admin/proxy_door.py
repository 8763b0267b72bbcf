"""HTTP to a port inside a sandbox: what the proxy routes do, and the same at the app's own door.

``Forwarder`` is the work itself (target, headers, the kept-alive request, the answer as an ASGI
response), shared by the routed endpoints (rock.admin.routes_ports) and ``ProxyDoor``.

``ProxyDoor`` answers ``.../sandboxes/{id}/proxy[/{path}]`` before FastAPI's layers, routing and
parameter handling, which measured ~0.3 ms of the admin's CPU per proxied request here, more
than the command round trip's whole share. It takes only the plain case: a known method, a valid
port, a caller and sandbox that check out, a body of declared size within the route's limit.
Anything else it leaves untouched (nothing received, nothing sent) to the routed endpoints,
which answer it exactly as before: the errors, their shapes and the schema stay theirs.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse

from rock.admin import port_http, ports
from rock.admin.context import PREFIX, Ctx
from rock.admin.errors import error_body, status_and_body
from rock.admin.hotpath import read_body
from rock.admin.limits import limit_for
from rock.errors import RockError

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
SANDBOXES = PREFIX + "/sandboxes/"
# What the server's answer keeps: its own framing (content-length) where it gave one.
ANSWER_DROPS = ports.HOP_BY_HOP - {"content-length"}
# The metrics' route labels: the routes' own templates.
ROUTE, ROUTE_ROOT = SANDBOXES + "{sandbox_id}/proxy/{path}", SANDBOXES + "{sandbox_id}/proxy"


class Forwarder:
    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.read_timeout = ctx.settings.proxy_timeout
        self.pools = port_http.Pools(ctx.settings.proxy_keepalive_connections, ctx.settings.proxy_keepalive_seconds)

    async def forward(self, agent, port: int, method: str, rest: str, query: str, headers: Headers,
                      body: bytes, sandbox_id: str) -> Response:
        """One request to the server on ``port`` (``query``: the caller's raw query string), its
        answer as a response (502 if it misbehaves)."""
        tail = ports.forwarded_query(query)
        target = "/" + rest + (f"?{tail}" if tail else "")
        sent = ports.forwarded_headers(headers.items(), self.ctx.auth.enabled)
        try:
            answer = await port_http.request(self.pools, agent, port, method, target, sent, body, self.read_timeout)
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


def _parse(scope) -> tuple[str, str, bool] | None:
    """(sandbox id, path after proxy/, whether it is the root route) of a proxy request the door
    may take, else None."""
    path = scope["path"]
    if scope["method"] not in METHODS or "\n" in path:
        return None
    sandbox_id, _, tail = path[len(SANDBOXES):].partition("/")
    if not sandbox_id:
        return None
    if tail == "proxy":
        return sandbox_id, "", True
    if tail.startswith("proxy/"):
        return sandbox_id, tail[6:], False
    return None


class ProxyDoor:
    def __init__(self, ctx: Ctx, forwarder: Forwarder, metrics=None):
        self.ctx, self.forwarder, self.metrics = ctx, forwarder, metrics

    async def __call__(self, scope, receive, send) -> bool:
        """Answer a plain proxy request and return True; else return False, having done nothing."""
        parsed = _parse(scope)
        if parsed is None:
            return False
        sandbox_id, rest, root = parsed
        headers = Headers(scope=scope)
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        wanted = [v for k, v in query if k == "rock_target_port"]
        declared = headers.get("content-length")
        if (wanted and not wanted[-1].isdigit()) or "transfer-encoding" in headers or (
                declared is not None and (not declared.isdigit() or int(declared) > limit_for(scope["path"]))):
            return False  # the routes' own parameter checks and body limits answer these
        t0 = time.perf_counter()
        try:
            owner = self.ctx.auth.principal(headers)
            port, rest = ports.resolve_target(headers, wanted[-1] if wanted else None, rest)
            agent = await self.ctx.sandboxes.agent(sandbox_id, owner)
        except RockError:
            return False  # refused: the routed endpoint says why, in its own words
        status = 500
        try:
            try:
                body = await read_body(receive, limit_for(scope["path"])) if declared not in (None, "0") else b""
                response = await self.forwarder.forward(agent, port, scope["method"], rest,
                                                        ports.raw_query(scope), headers, body,
                                                        sandbox_id)
            except Exception as exc:  # noqa: BLE001 - mapped exactly like the routed handlers do
                code, payload = status_and_body(exc, scope["path"])
                response = Response(payload, status_code=code, media_type="application/json")
            status = response.status_code
            await response(scope, receive, send)
        finally:
            if self.metrics is not None:
                self.metrics.observe(scope["method"], ROUTE_ROOT if root else ROUTE,
                                     status, time.perf_counter() - t0, t0)
        return True
