"""The admin service: one FastAPI app with the worker embedded (single machine).

Role ``admin`` serves everything; role ``proxy`` serves only the data plane (commands, sessions,
files, streams, ports) against the shared state, for read/write separation. A role mounts only
the routes it serves: nothing on a proxy creates a sandbox or an env (GEM's make and vector envs,
gym, Chat endpoints, training, images and E2B's control plane are the admin's; a made env's reset
and step are served by both), so a request for them there is a 404 before any handler runs, and
a proxy leaves nothing behind that outlives it.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request

from rock.admin import chat, e2b, envs, errors, jobs, metrics, openapi, ports, rock_api, training, ui
from rock.admin.auth import AuthGate
from rock.actions.response import RockResponse
from rock.admin.context import ok
from rock.admin.doors import DoorApp, Doors
from rock.admin.limits import BodyLimit
from rock.admin.root import Root
from rock.config import Settings

# The front doors, one folder each (rock.admin.<door>): ``install(app, ctx)`` mounts what this
# role serves, with the services the composition root (rock.admin.root) made.
DOORS = (rock_api, ports, envs, training, chat, e2b, jobs, ui)
# Served without a token even when tokens are on (the schema says so per operation)
PUBLIC = {("GET", "/health"), ("GET", "/ui/login"), ("POST", "/ui/login"), ("POST", "/ui/logout"),
          ("GET", "/apis/v1/training/agentscope/healthz")}
# Past the token gate: the UI's static assets, the schema and its viewers.
OPEN_PATHS = ("/ui/static/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", *e2b.OPEN_PATHS)


def create_app(settings: Settings | None = None, worker=None) -> FastAPI:
    """Build the app. ``worker`` may be passed in (tests, embedding); otherwise one is made from
    ``settings`` and started and closed with the app. Sandboxes keep running when the app stops."""
    settings = settings or Settings.load()
    ctx = root = Root(settings, worker)
    store = root.store

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with root.running():
            yield

    app = DoorApp(title="ROCK admin", version="0.1.0", lifespan=lifespan)
    app.state.rock = root  # the app's one piece of state: the routes declared at module level find their services here
    errors.install(app)
    for door in DOORS:
        door.install(app, ctx)

    @app.get("/health", responses={200: {"model": RockResponse[dict]}, 204: {"description": "E2B's envd health"}})
    async def health(request: Request):
        if e2b.is_envd_health(request):  # the e2b SDK asks envd, on this address
            return await e2b.health(ctx, request)
        return ok({"status": "ok", "role": settings.role, "backend": root.worker.backend_name,
                   "sandboxes": sum(1 for r in ctx.sandboxes.records.values() if r.state == "running"),
                   "uptime_seconds": round(time.time() - ctx.started_at, 3), "auth": ctx.auth.enabled,
                   "reaper": ctx.sandboxes.reaping, "store": "postgresql" if store.shared else "sqlite"})

    app.add_middleware(BodyLimit)
    # Every routed request shows a token first (the routes still scope by it); AgentScope's routes
    # refuse in its error shape, the UI's pages send a browser to the login form.
    refusals = [(training.routes.AGENTSCOPE + "/", training.routes.as_refusal)]
    if settings.role == "admin":
        refusals += [("/", ui.pages.login_needed), ("/ui/", ui.pages.login_needed)]
    app.add_middleware(AuthGate, auth=ctx.auth, public=PUBLIC, open_paths=OPEN_PATHS, refusals=tuple(refusals))
    # Outermost of the middleware: times every request that passes the door below.
    meter = root.metrics = metrics.install(app, ctx)
    openapi.install(app, ctx.auth.enabled, PUBLIC)
    # One way in for the fast routes of every router mounted above (run_in_session, starts, env
    # reset/step, a rollout's per-task calls, the port proxy's plain case): answered at the app's
    # own door, ahead of FastAPI and every middleware, timed into the same metrics.
    app.doors = Doors.build(app, ctx, meter)
    return app
