"""E2B's protocol, so the real ``e2b`` SDK runs its sandboxes here (see docs/e2b.md).

One address serves both planes: the control plane (``/sandboxes``, ``/v2/sandboxes``; X-API-KEY
is a ROCK token) and envd's data plane (Connect RPCs ``/process.Process/*`` and
``/filesystem.Filesystem/*``, ``/files``, ``/health``; the sandbox named by ``E2b-Sandbox-Id``
and proven by its ``X-Access-Token``). Both translate onto the sandbox service and the agent's
operations; nothing here runs anything on the host.

Adding a route: a control-plane route in ``control.py`` (pause, resume and snapshots in
``snapshots.py``, templates in ``templates.py``, secrets in ``secrets.py``; what is not served answers from ``unserved.py``); an envd RPC in the module of its Connect service (``process.py``,
``filesystem.py``), the code interpreter's in ``interpreter.py``; the Connect protocol is ``connect.py``'s,
E2B's error shapes ``errors.py``'s, what both planes share ``common.py``'s.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from rock.admin.context import Ctx
from rock.admin.e2b import control, filesystem, interpreter, process, secrets, templates, unserved, volumes
from rock.admin.e2b.common import Users
from rock.admin.e2b.errors import HANDLERS, gone_response
from rock.admin.front import FrontDoor
from rock.errors import SandboxGone

# Past the generic token gate: these routes authenticate themselves (X-API-KEY, the access token).
OPEN_PATHS = (*unserved.OPEN_PATHS, *volumes.OPEN_PATHS, "/files", "/process.Process/", "/filesystem.Filesystem/",
              "/execute", "/contexts", "/contexts/")


def is_envd_health(request: Request) -> bool:
    return "e2b-sandbox-id" in request.headers or "x-access-token" in request.headers


async def health(ctx: Ctx, request: Request) -> Response | None:
    """envd's health, when the e2b SDK asks it on the admin's address (else None: the admin's own)."""
    if not is_envd_health(request):
        return None
    try:
        return await filesystem.envd_health(ctx, request)
    except SandboxGone as exc:
        return gone_response(exc)


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount E2B's routes and its error shapes: both planes on an admin; a proxy (read/write
    separation) serves only the data plane (envd's, on sandboxes an admin made)."""
    users = Users()
    if ctx.settings.role == "admin":
        built = ctx.templates
        app.include_router(templates.router(ctx, built))  # before DELETE /templates/{id} could be read as an id
        app.include_router(control.router(ctx, built))
        app.include_router(volumes.router(ctx))
        app.include_router(secrets.router(ctx))
    app.include_router(process.router(ctx, users))
    app.include_router(filesystem.router(ctx, users))
    app.include_router(interpreter.router(ctx))
    unserved.install(app, ctx)


FRONT = FrontDoor(open_paths=OPEN_PATHS, health=health, errors=HANDLERS)  # E2B's error shapes: errors.py
