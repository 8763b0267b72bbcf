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
from rock.admin.front import FrontDoor
from rock.admin.auth import AuthGate
from rock.actions.response import RockResponse
from rock.admin.context import ok
from rock.admin.doors import DoorApp, Doors
from rock.admin.limits import BodyLimit
from rock.admin.root import Root
from rock.config import Settings

# The front doors, one folder each (rock.admin.<door>): ``install(app, ctx)`` mounts what this
# role serves, with the services the composition root (rock.admin.root) made; ``FRONT`` declares
# the rest (rock.admin.front): the roles, the token gate's exceptions and refusals, error handlers.
DOORS = (rock_api, ports, envs, training, chat, e2b, jobs, ui)
FRONTS: tuple[FrontDoor, ...] = tuple(door.FRONT for door in DOORS)
# Served without a token even when tokens are on (the schema says so per operation)
PUBLIC = {("GET", "/health")}.union(*(front.public for front in FRONTS))
# Past the token gate: the schema and its viewers, and what the doors declare.
OPEN_PATHS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
              *(path for front in FRONTS for path in front.open_paths))


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
    for door, front in zip(DOORS, FRONTS):
        if settings.role in front.roles:
            door.install(app, ctx)
            for exc_type, handler in front.errors:
                app.add_exception_handler(exc_type, handler)
    answers_health = [front.health for front in FRONTS if front.health is not None]

    @app.get("/health", responses={200: {"model": RockResponse[dict]}, 204: {"description": "E2B's envd health"}})
    async def health(request: Request):
        for door_health in answers_health:  # a door's own callers (the e2b SDK asks envd, on this address)
            answer = await door_health(ctx, request)
            if answer is not None:
                return answer
        return ok({"status": "ok", "role": settings.role, "backend": root.worker.backend_name,
                   "sandboxes": sum(1 for r in ctx.sandboxes.records.values() if r.state == "running"),
                   "uptime_seconds": round(time.time() - ctx.started_at, 3), "auth": ctx.auth.enabled,
                   "reaper": ctx.sandboxes.reaping, "store": "postgresql" if store.shared else "sqlite"})

    app.add_middleware(BodyLimit)
    # Every routed request shows a token first (the routes still scope by it); a door may refuse in
    # its own shape (AgentScope's errors, the UI's login form).
    refusals = tuple((r.prefix, r.answer) for front in FRONTS for r in front.refusals if settings.role in r.roles)
    app.add_middleware(AuthGate, auth=ctx.auth, public=PUBLIC, open_paths=OPEN_PATHS, refusals=refusals)
    # Outermost of the middleware: times every request that passes the door below.
    meter = root.metrics = metrics.install(app, ctx, {k: v for front in FRONTS for k, v in front.env_calls.items()})
    openapi.install(app, ctx.auth.enabled, PUBLIC)
    # One way in for the fast routes of every router mounted above (run_in_session, starts, env
    # reset/step, a rollout's per-task calls, the port proxy's plain case): answered at the app's
    # own door, ahead of FastAPI and every middleware, timed into the same metrics.
    app.doors = Doors.build(app, ctx, meter)
    return app
