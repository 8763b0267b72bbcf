"""The admin service: one FastAPI app with the worker embedded (single machine).

Role ``admin`` serves everything; role ``proxy`` serves only the data plane (commands, sessions,
files, streams, ports) against the shared state, for read/write separation. A role mounts only
the routes it serves: nothing on a proxy creates a sandbox or an env (GEM's make and vector envs,
gym, Chat endpoints, training, images and E2B's control plane are the admin's; a made env's reset
and step are served by both), so a request for them there is a 404 before any handler runs, and
a proxy leaves nothing behind that outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request

from rock.admin import chat, e2b, envs, errors, jobs, metrics, openapi, ports, rock_api, training, ui
from rock.admin.sandboxes.lifecycle import Lifecycle
from rock.admin.auth import Auth, AuthGate
from rock.actions.response import RockResponse
from rock.admin.context import Ctx, ok
from rock.admin.doors import DoorApp, Doors
from rock.admin.limits import BodyLimit
from rock.admin.sandboxes import Sandboxes
from rock.admin.store.backends import open_store
from rock.config import Settings

log = logging.getLogger("rock.admin")
# The front doors, one folder each (rock.admin.<door>): ``install(app, ctx)`` mounts what this
# role serves; a door with state of its own has ``startup(app)`` and ``shutdown(app)`` too, run by
# the app's lifespan (startups in this order, shutdowns in the reverse). The store is no door: it
# opens before the worker and closes after it.
DOORS = (rock_api, ports, envs, training, chat, e2b, jobs, ui)
# Served without a token even when tokens are on (the schema says so per operation)
PUBLIC = {("GET", "/health"), ("GET", "/ui/login"), ("POST", "/ui/login"), ("POST", "/ui/logout"),
          ("GET", "/apis/v1/training/agentscope/healthz")}
# Past the token gate: the UI's static assets, the schema and its viewers.
OPEN_PATHS = ("/ui/static/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", *e2b.OPEN_PATHS)


async def _warm_up(images: list[str]) -> None:
    """ROCK's warmup.images: have them in the engine before the first sandbox asks (missing ones pulled)."""
    from rock.runtime.docker.images import ensure_image

    for image in images:
        try:
            await asyncio.to_thread(ensure_image, image)
            log.info("warmup: image %s is ready", image)
        except Exception as exc:  # noqa: BLE001 - a warmup failure is reported, the admin serves on
            log.warning("warmup: image %s: %s", image, getattr(exc, "message", None) or exc)


def create_app(settings: Settings | None = None, worker=None) -> FastAPI:
    """Build the app. ``worker`` may be passed in (tests, embedding); otherwise one is made from
    ``settings`` and started and closed with the app. Sandboxes keep running when the app stops."""
    settings = settings or Settings.load()
    own_worker = worker is None
    if worker is None and settings.simulated_cluster:  # the scale benchmark's stand-in nodes, never for serving
        from rock.cluster.simulated import SimulatedCluster

        worker = SimulatedCluster(settings)
    elif worker is None and settings.cluster:
        from rock.cluster.client import ClusterWorker

        worker = ClusterWorker(settings)
    elif worker is None and settings.role == "proxy":
        from rock.worker.attached import AttachedWorker

        worker = AttachedWorker(settings)  # beside the admin on its state dir: uses its sandboxes
    elif worker is None:
        from rock.worker.worker import Worker

        worker = Worker(settings)
    store = open_store(settings.store_url, Path(settings.state_dir))
    ctx = Ctx(settings=settings, auth=Auth(settings.tokens), sandboxes=Sandboxes(settings, worker, store),
              worker=worker, started_at=time.time())
    lifecycle = Lifecycle(ctx.sandboxes, settings.auto_delete_seconds)
    broker = getattr(getattr(getattr(worker, "egress", None), "gate", None), "broker", None)
    if broker is not None:  # the egress relay asks the vault for a value per request to a bound host
        broker.lookup = ctx.sandboxes.secrets.value_for

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        warmup = None
        await store.open()
        try:
            if own_worker:
                await worker.start()
            if settings.role == "admin" and not store.shared:
                await ctx.sandboxes.reconcile()
            else:  # a proxy, or one of several admins: the lease holder's sweep reconciles
                await ctx.sandboxes.load()
            if settings.role == "admin":
                ctx.sandboxes.start_reaper()
                lifecycle.start()  # timed archive/delete: with a shared store only the reaper-lease holder acts
                if settings.warmup_images:
                    warmup = asyncio.create_task(_warm_up(settings.warmup_images), name="rock-warmup")
            for door in DOORS:
                if hasattr(door, "startup"):
                    await door.startup(app)
            log.info("rock admin ready: role=%s backend=%s state_dir=%s", settings.role, worker.backend_name,
                     settings.state_dir)
            yield
        finally:
            if warmup is not None:
                warmup.cancel()
            for door in reversed(DOORS):
                if hasattr(door, "shutdown"):
                    await door.shutdown(app)
            await lifecycle.close()
            await ctx.sandboxes.close()
            if own_worker:
                await worker.close(stop_sandboxes=False)
            await store.close()

    app = DoorApp(title="ROCK admin", version="0.1.0", lifespan=lifespan)
    app.state.rock = ctx
    app.state.lifecycle = lifecycle
    errors.install(app)
    for door in DOORS:
        door.install(app, ctx)

    @app.get("/health", responses={200: {"model": RockResponse[dict]}, 204: {"description": "E2B's envd health"}})
    async def health(request: Request):
        if e2b.is_envd_health(request):  # the e2b SDK asks envd, on this address
            return await e2b.health(ctx, request)
        return ok({"status": "ok", "role": settings.role, "backend": worker.backend_name,
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
    meter = metrics.install(app, ctx)
    openapi.install(app, ctx.auth.enabled, PUBLIC)
    # One way in for the fast routes of every router mounted above (run_in_session, starts, env
    # reset/step, a rollout's per-task calls, the port proxy's plain case): answered at the app's
    # own door, ahead of FastAPI and every middleware, timed into the same metrics.
    app.doors = Doors.build(app, ctx, meter)
    return app
