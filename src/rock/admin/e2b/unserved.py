"""What ROCK does not serve of E2B's API still answers as E2B does: ``{"code", "message"}`` with
E2B's status, after the caller's X-API-KEY is checked (401 in E2B's shape without a good one),
so an SDK call ends in the SDK's own exception (NotFoundException, ...), never in a KeyError on
our envelope or a false "bad API key".

The paths are E2B's control plane's (spec/openapi.yml of e2b-dev/E2B); a path there with no
route is a 404, one with a route but not for this method a 405 naming the allowed ones.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from rock.admin.context import Ctx
from rock.admin.e2b.common import owner_of
from rock.admin.e2b.errors import e2b_response
from rock.errors import E2BError
from rock.admin.errors import allowed_methods

# E2B's control plane: each covers itself and what is under it
PREFIXES = ("/sandboxes", "/v2/sandboxes", "/snapshots", "/templates", "/v2/templates", "/v3/templates",
            "/volumes", "/secrets", "/teams", "/nodes", "/access-tokens", "/api-keys", "/admin")
OPEN_PATHS = tuple(p for prefix in PREFIXES for p in (prefix, prefix + "/"))


def is_e2b_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)


def install(app: FastAPI, ctx: Ctx) -> None:
    """Answer the 404s and 405s of E2B's paths in E2B's shape; every other path keeps ``app``'s answer."""
    rock_answer = app.exception_handlers[StarletteHTTPException]

    async def answer(request: Request, exc: StarletteHTTPException):
        if exc.status_code not in (404, 405) or not is_e2b_path(request.url.path):
            return await rock_answer(request, exc)
        try:
            owner_of(ctx, request)
        except E2BError as refused:
            return e2b_response(request, refused)
        path = request.url.path
        if exc.status_code == 404:
            return e2b_response(request, E2BError(404, f"{request.method} {path} is not served by this ROCK server"))
        allowed = ", ".join(allowed_methods(request))
        response = e2b_response(request, E2BError(405, f"{request.method} is not allowed on {path}; allowed: {allowed}"))
        response.headers["Allow"] = allowed
        return response

    app.add_exception_handler(StarletteHTTPException, answer)
