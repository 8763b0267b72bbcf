"""One way in: the admin's fast routes as one table, answered at the app's own door.

Measured here, FastAPI's routing, parameter handling and middleware layers cost ~0.2-0.3 ms of the
admin's CPU a request: as much as a bash round trip, more than a GEM step or a training call.
The routes a trainer calls per step therefore skip them: ``DoorApp.__call__`` looks a request's
``(method, path)`` up in one table (``Doors``) and, when it is there, does the shared steps once,
in this order, before any other layer runs:

    principal (the token's namespace; a caller without one learns nothing more)
    -> body (declared size checked against the route's limit, then read, counted as it streams)
    -> validation (the route's pydantic model, straight from bytes)
    -> the handler ``handler(ctx, body, principal, call)``
    -> error mapping (``rock.admin.errors.status_and_body``, or the route's own)
    -> the answer, timed into the metrics under the route's template.

Every other request goes through FastAPI as usual. A fast route is declared once, where its front
door's other routes are, with ``door``::

    @door(api, "POST", "/run_in_session", SandboxBashAction, require_body=True, **doc(...))
    async def run_in_session(ctx, action, principal, call):
        return await run_action(ctx, action, principal)

``door`` adds the route to FastAPI for the OpenAPI schema (name, docstring, path parameters and
body as declared) and marks it; ``Doors.build`` collects the marked routes of whatever routers the
app mounted, so a role that does not mount a router does not answer its routes at the door either.

A route whose plain case is fast but whose odd cases are FastAPI's (the port proxy: parameter
checks, body limits and refusals answered in the routed endpoint's words) attaches a door to its
real endpoint with ``attach`` and a ``claim``: the door takes a request only when the claim
returns something, having received and sent nothing otherwise.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import compile_path

from rock.admin.errors import retry_after, status_and_body
from rock.jsonutil import dumps
from rock.admin.limits import MAX_JSON_BODY, limit_for
from rock.errors import BadRequest, PayloadTooLarge, RockError

Handler = Callable[..., Awaitable[Any]]
_JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class Door:
    """How the door answers one route. ``model``: the body's pydantic model (validated), ``bytes``
    (the raw body) or None (not read: the handler reads it, ``call.read_body()``)."""

    handler: Handler
    model: Any = None
    require_body: bool = False  # an empty body is a 400 naming the model (ROCK's routes), not a 422
    media_type: bytes = _JSON  # of a successful answer; errors are always JSON
    errors: Callable[[Exception, str], tuple[int, bytes]] = status_and_body
    claim: Callable[..., Awaitable[Any]] | None = None  # (ctx, principal, call) -> state, or None: FastAPI's
    own_auth: bool = False  # the handler proves the caller itself (envd's access token): no principal asked


class Call:
    """What a handler gets beside (ctx, body, principal): the request's scope, its path parameters,
    its headers (a dict, names lowercased, the first of a repeated one), the app, and what the
    route's claim returned."""

    __slots__ = ("scope", "receive", "params", "app", "claimed", "_headers")

    def __init__(self, scope, receive, params: dict, app):
        self.scope, self.receive, self.params, self.app = scope, receive, params, app
        self.claimed = None
        self._headers = None

    @property
    def headers(self) -> dict[str, str]:
        """The request's headers as a dict: names lowercased, values decoded as Latin-1, the first of a repeated
        name kept. Built on first use, so a handler that never reads them pays nothing."""
        if self._headers is None:  # built once, and only when someone asks (auth off: often nobody)
            self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(self.scope["headers"])}
        return self._headers

    async def read_body(self, limit: int | None = None) -> bytes:
        """The whole body, refused past ``limit`` (the route's, by default) as it streams."""
        return await read_body(self.receive, limit_for(self.scope["path"]) if limit is None else limit)


def _schema_endpoint(handler: Handler, path: str, body: Any):
    """A stand-in endpoint that FastAPI documents as the route (the door answers every request for
    it): the handler's name and docstring, the path's parameters, and ``body`` as a typed body
    parameter when the schema is to come from the model rather than from ``openapi_extra``."""

    async def endpoint(**_):  # never reached: Doors answers the route before FastAPI sees it
        raise RuntimeError(f"{handler.__name__} is answered at the app's door (rock.admin.doors)")

    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str)
              for name in compile_path(path)[2]]
    if body is not None:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body))
    endpoint.__signature__ = inspect.Signature(params)
    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    endpoint.__module__ = handler.__module__
    return endpoint


def door(router, method: str, path: str, model: Any = None, *, schema_body: Any = None, require_body: bool = False,
         media_type: str = "application/json", errors=status_and_body, name: str | None = None, **route):
    """Declare a fast route on ``router`` (a FastAPI APIRouter): ``route`` are ``add_api_route``'s
    arguments (responses, openapi_extra, tags...); ``schema_body``: a model the schema's request
    body comes from as FastAPI makes it for a typed parameter (else it is in openapi_extra);
    ``name``: the operation's name where one handler serves two paths. Returns the handler."""

    def register(handler: Handler) -> Handler:
        endpoint = _schema_endpoint(handler, path, schema_body)
        endpoint.__door__ = Door(handler, model, require_body, media_type.encode(), errors)
        router.add_api_route(path, endpoint, methods=[method], name=name, **route)
        return handler

    return register


def attach(endpoint, handler: Handler, claim, model: Any = None) -> None:
    """Give a real routed endpoint a door for its plain case (see the module's docstring)."""
    endpoint.__door__ = Door(handler, model, claim=claim)


class Doors:
    """The table: ``(method, path) -> (Door, template)`` for fixed paths, and per method the
    templated ones (``{param}``), tried by their fixed prefix first."""

    def __init__(self, ctx, metrics=None, app=None):
        self.ctx, self.metrics, self.app = ctx, metrics, app
        self.exact: dict[tuple[str, str], tuple[Door, str]] = {}
        self.templated: dict[str, list[tuple[str, Any, Door, str]]] = {}

    @classmethod
    def build(cls, app: FastAPI, ctx, metrics=None) -> "Doors":
        """The doors of every route the app mounted (``door``/``attach``), in the order mounted."""
        from rock.admin.openapi import all_routes

        doors = cls(ctx, metrics, app)
        for path, route in all_routes(app.routes):
            found = getattr(route.endpoint, "__door__", None)
            if found is not None:
                for method in route.methods:
                    doors.add(method, path, found)
        return doors

    def add(self, method: str, path: str, found: Door) -> None:
        """Enter a route: a fixed path goes in the exact table; a templated one (``{param}``) is appended to its
        method's list, tried in the order added."""
        if "{" not in path:
            self.exact[(method, path)] = (found, path)
            return
        regex = compile_path(path)[0]
        self.templated.setdefault(method, []).append((path[:path.index("{")], regex, found, path))

    def match(self, method: str, path: str) -> tuple[Door, str, dict] | None:
        """The route for ``method`` and ``path``: (door, path template, path parameters), or None when no door
        answers it (FastAPI's routing then does). An exact path wins over a template."""
        hit = self.exact.get((method, path))
        if hit is not None:
            return hit[0], hit[1], {}
        for prefix, regex, found, template in self.templated.get(method, ()):
            if path.startswith(prefix) and (m := regex.match(path)) is not None:
                return found, template, m.groupdict()
        return None

    async def __call__(self, scope, receive, send) -> bool:
        """Answer a request of the table and return True; else return False, having done nothing."""
        hit = self.match(scope["method"], scope["path"])
        if hit is None:
            return False
        found, template, params = hit
        call = Call(scope, receive, params, self.app)
        t0, status, extra = time.perf_counter(), 500, []
        ctx = self.ctx
        if found.claim is not None:
            try:
                principal = ctx.auth.principal(call.headers)
                call.claimed = await found.claim(ctx, principal, call)
            except RockError:
                call.claimed = None  # refused: the routed endpoint says why, in its own words
            if call.claimed is None:
                return False
        try:
            try:
                if found.claim is None:
                    principal = ctx.auth.principal(call.headers) if ctx.auth.enabled and not found.own_auth else None
                body = None if found.model is None else await _body(found, call)
                out = await found.handler(ctx, body, principal, call)
                if isinstance(out, Response):
                    status = out.status_code
                    await out(scope, receive, send)
                    return True
                if isinstance(out, tuple):
                    payload, status = out
                else:
                    payload, status = out if type(out) is bytes else dumps(out), 200
                media = found.media_type
            except Exception as exc:  # noqa: BLE001 - the route's error mapping, as its routed handlers map
                status, payload = found.errors(exc, scope["path"])
                media = _JSON
                extra = [(k.lower().encode(), v.encode()) for k, v in retry_after(exc).items()]
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", media), (b"content-length", b"%d" % len(payload)), *extra]})
            await send({"type": "http.response.body", "body": payload})
            return True
        finally:
            if self.metrics is not None:
                self.metrics.observe(scope["method"], template, status, time.perf_counter() - t0, t0)


async def _body(found: Door, call: Call):
    limit = limit_for(call.scope["path"])
    declared = _content_length(call.scope["headers"])
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes for this route")
    body = await read_body(call.receive, limit)
    if found.model is bytes:
        return body
    if found.require_body and not body.strip():
        raise BadRequest(f"request body is empty; expected a JSON object for {found.model.__name__}")
    return found.model.__pydantic_validator__.validate_json(body)  # model_validate_json, less its Python layer


def _content_length(headers) -> str | None:
    """The first Content-Length of raw ASGI headers (as ``Call.headers`` would give it), without
    building the whole dict: a body's read needs only this one."""
    for name, value in headers:
        if name == b"content-length":
            return value.decode("latin-1")
    return None


class DoorApp(FastAPI):
    """FastAPI with ``doors`` (a Doors table) in front of everything, its own layers included."""

    doors: Doors | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.doors is not None and await self.doors(scope, receive, send):
            return None
        return await super().__call__(scope, receive, send)


async def read_body(receive, limit: int = MAX_JSON_BODY) -> bytes:
    """A request's whole body from ASGI ``receive``, refused past ``limit`` bytes as it streams."""
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
