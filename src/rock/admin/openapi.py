"""The admin's OpenAPI schema, made to tell the truth about routes that read their input raw.

Most data-plane routes validate their bytes themselves (``context.parse``/``query``; the hot
paths at the ASGI door do the same), so FastAPI cannot see their bodies or parameters. They
declare them here from the same pydantic models (``doc(body=..., query=...)``), and ``install``
adds what every route shares: the error envelope of 401 (tokens on), 400/413 (a body and its
size limit) and 422 (any input), and the token schemes.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Path
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from rock.actions.response import RockResponse

REF = "#/components/schemas/{model}"


class ErrorResult(BaseModel):
    code: int  # ROCK's class: 4000 client, 5000 server, 6000 a command failed under check="raise"
    failure_reason: str
    error_type: str  # the rock.errors class name (the SDK re-raises the same type)


class ErrorEnvelope(BaseModel):
    """Every 4xx/5xx of the admin (see rock.admin.errors)."""

    status: Literal["Failed"]
    message: str
    error: str
    result: ErrorResult


# What each status means on this admin; a route lists the ones it really answers.
WHY = {
    400: "input the schema cannot express was refused (named in the message), e.g. a path with '..'",
    401: "missing or unknown API token",
    403: "the token's namespace may not do this, or the sandbox refused it (permission denied there: a file or a "
         "command its user may not read, write or run)",
    404: "no such sandbox, session, file or process (another namespace's look the same)",
    409: "the target is in a state that does not allow this (e.g. the sandbox is not running)",
    410: "the sandbox's agent is gone (the sandbox died)",
    413: "the request body exceeds this route's limit",
    422: "invalid body or parameters: the field and the reason are named (an env call: the env's own code raised "
         "on this input, named in the message)",
    426: "a WebSocket route: connect with an Upgrade",
    429: "the namespace is at one of its quotas or past its create rate (the limit is named; a rate's answer "
         "carries Retry-After)",
    502: "the server inside the sandbox did not answer properly",
    503: "the sandbox could not start, or this node has no room for it: the reason, or the limit, is named",
    504: "the call ran past its timeout, or the sandbox's agent did not answer (e.g. its processes are stopped)",
    507: "out of disk space: in the sandbox, or under the admin's state directory (the message says which)",
}
SANDBOX = (403, 404, 409, 410, 504, 507)  # any route that talks to a sandbox's agent


# An operation that may take longer than a client's usual wait says so in its schema, with the
# most seconds it may take and why: ``{"x-rock-long-running": {"seconds": 600, "why": "..."}}``.
# Clients size their timeouts by it; the fuzzer's response-time check allows it (tests/fuzz/runner.py).
LONG_RUNNING = "x-rock-long-running"


def long_running(seconds: int, why: str) -> dict:
    """``openapi_extra`` of a route that may answer only after ``seconds`` (it starts an env
    sandbox, probes the env catalog, builds an image): declared, not left for a client to find."""
    return {LONG_RUNNING: {"seconds": seconds, "why": why}}


# The env catalog's routes (GEM's, the UI's fragment): the first call probes the catalog in an env sandbox.
CATALOG_PROBE = long_running(600, "the first call probes the env catalog in an env sandbox; later ones read it")
# A rollout job's id in a path (the jobs API, the UI's job pages).
JobPath = Path(min_length=1, max_length=64, pattern=r"^job-[0-9a-f]{12}$", description="the job's id")


def errors(*codes: int) -> dict[int, dict]:
    return {code: {"model": ErrorEnvelope, "description": WHY[code]} for code in codes}


def errors_noting(notes: dict[int, str], *codes: int) -> dict[int, dict]:
    """``errors(*codes)`` with a route's own description of some of them (``notes``: what a 404 or
    a 409 means there)."""
    return {code: {**about, "description": notes.get(code, about["description"])}
            for code, about in errors(*codes).items()}


def schema_of(model: type[BaseModel]) -> dict:
    """The model's JSON schema with references into components (``install`` hoists its $defs)."""
    return model.model_json_schema(ref_template=REF)


def body(model: type[BaseModel] | None = None, media: str = "application/json", required: bool = True,
         description: str | None = None) -> dict:
    schema = schema_of(model) if model is not None else {"type": "string", "format": "binary"}
    out: dict[str, Any] = {"required": required, "content": {media: {"schema": schema}}}
    if description:
        out["description"] = description
    return out


def tar_body(description: str) -> dict:
    """A tar archive as the raw body. The server reads the bytes whatever the Content-Type says;
    octet-stream is declared beside x-tar so that a client (or a fuzzer) without a tar encoder
    can send one."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "description": description,
            "content": {"application/x-tar": binary, "application/octet-stream": binary}}


def params(model: type[BaseModel], where: str = "query") -> list[dict]:
    """One OpenAPI parameter per field of a query model (validated by ``context.query``)."""
    schema = schema_of(model)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        entry = {"name": name, "in": where, "required": name in required, "schema": prop}
        if "$defs" in schema:
            entry["schema"] = {**prop, "$defs": schema["$defs"]}
        out.append(entry)
    return out


def doc(body_model: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
        result: Any = None, codes: tuple[int, ...] = (), raw_body: str | None = None, envelope: bool = True,
        body_required: bool = True, **kwargs) -> dict:
    """Route decorator arguments for a route that reads its input itself.

    ``result`` is the envelope's ``result`` type (``envelope=False``: the whole body's model);
    ``raw_body`` a media type whose body is bytes passed on as they are."""
    extra: dict[str, Any] = dict(kwargs.pop("openapi_extra", {}))
    if body_model is not None:
        extra["requestBody"] = body(body_model)
    elif raw_body is not None:
        extra["requestBody"] = body(None, raw_body, required=body_required)
    if query is not None:
        extra["parameters"] = params(query)
    responses: dict[int, dict] = dict(kwargs.pop("responses", {}))
    if result is not None and 200 not in responses:
        responses[200] = {"model": RockResponse[result] if envelope else result}
    responses.update(errors(*codes))
    return {"openapi_extra": extra or None, "responses": responses, **kwargs}


def all_routes(routes, prefix: str = "") -> list[tuple[str, Any]]:
    """(full path template, route) of every HTTP route, documented or plain (envd's protocol),
    through the included routers newer FastAPI keeps as one entry each (their routes' own paths
    lack the include's prefix)."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += all_routes(inner.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "endpoint") and hasattr(route, "methods") and hasattr(route, "path_format"):
            out.append((prefix + route.path_format, route))
    return out


def api_routes(routes, prefix: str = "") -> list[tuple[str, Any]]:
    """(full path template, APIRoute) of every documented route (``all_routes``' APIRoutes)."""
    return [(path, route) for path, route in all_routes(routes, prefix) if hasattr(route, "responses")]


# -- applied once to the whole schema ----------------------------------------------------------

_SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"},
    "xrl": {"type": "apiKey", "in": "header", "name": "XRL-Authorization",
            "description": "rl-rock's header (extra_headers), 'Bearer <token>' or the token"},
    "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "rock_token", "description": "the UI's login"},
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _hoist(node: Any, defs: dict) -> Any:
    """Move nested ``$defs`` (from model_json_schema) into components.schemas."""
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            defs.setdefault(name, _hoist(schema, defs))
        return {k: _hoist(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_hoist(v, defs) for v in node]
    return node


# pydantic's lax mode (ROCK's too) reads these as booleans; the schema says so rather than
# pretend only true/false pass (a client sending 1 or "yes" works against ROCK and here).
_LAX_TRUE_FALSE = ["0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"]
_LAX_BOOL = [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]},
             {"type": "string", "enum": sorted({*_LAX_TRUE_FALSE, *(v.upper() for v in _LAX_TRUE_FALSE),
                                                *(v.capitalize() for v in _LAX_TRUE_FALSE)})}]


def _lax_bools(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "boolean":
            return {**{k: v for k, v in node.items() if k != "type"}, "anyOf": _LAX_BOOL}
        return {k: _lax_bools(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_lax_bools(v) for v in node]
    return node


def _envelope_ref(schema: dict) -> dict:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorEnvelope" not in schemas:
        for name, model in (("ErrorResult", ErrorResult), ("ErrorEnvelope", ErrorEnvelope)):
            schemas[name] = _hoist(schema_of(model), schemas)
    return {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}


def _request_components(schema: dict) -> set[str]:
    """Component schemas a request body or parameter refers to, directly or through others."""
    schemas = schema.get("components", {}).get("schemas", {})
    todo = [op.get(key) for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)
            for key in ("requestBody", "parameters")]
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] not in seen:
                seen.add(ref.rsplit("/", 1)[1])
                todo.append(schemas.get(ref.rsplit("/", 1)[1]))
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return seen & set(schemas)


def finish(schema: dict, auth: bool, public: set[tuple[str, str]]) -> dict:
    """Add the shared answers to every operation, hoist $defs, declare the token schemes."""
    defs: dict = {}
    schema["paths"] = _hoist(schema["paths"], defs)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, s in defs.items():
        schemas.setdefault(name, s)
    for path, item in schema["paths"].items():  # what requests may send: lax booleans
        for op in item.values():
            if isinstance(op, dict):
                for key in ("requestBody", "parameters"):
                    if key in op:
                        op[key] = _lax_bools(op[key])
    for name in _request_components(schema):
        schemas[name] = _lax_bools(schemas[name])
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            responses = op.setdefault("responses", {})

            def add(code: int) -> None:
                if str(code) not in responses:
                    responses[str(code)] = {**_envelope_ref(schema), "description": WHY[code]}

            if op.get("requestBody"):
                add(400)  # an invalid Content-Length (rock.admin.limits)
                add(413)
            if op.get("requestBody") or op.get("parameters"):
                add(422)
            if auth and (method.upper(), path) not in public:
                add(401)
            if auth and (method.upper(), path) in public:
                op["security"] = []
    if auth:
        schema["components"]["securitySchemes"] = _SECURITY
        schema["security"] = [{name: []} for name in _SECURITY]
    return schema


def install(app: FastAPI, auth: bool, public: set[tuple[str, str]] = frozenset()) -> None:
    """``public``: (METHOD, path) pairs served without a token (health, the login page)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            app.openapi_schema = finish(schema, auth, set(public))
        return app.openapi_schema

    app.openapi = openapi
