"""ROCK's API (rl-rock's wire protocol) under ``/apis/envs/sandbox/v1``: one module per group.

    sandbox.py    start (a fast route), status, stop, delete, list, batch status
    lifecycle.py  restart, archive, commit (an admin's)
    images.py     image builds and pulls (an admin's)
    data.py       execute, sessions, run_in_session (a fast route), files, upload
    extra.py      ours beside ROCK's: history, commands, stats, downloads
    ws.py         streams over WebSocket (output, a terminal)
    cluster.py    the cluster's nodes and placement, as the admin sees them
    snapshots.py  pause, resume, snapshots and fork (an admin's)
    egress.py     a running sandbox's egress policy (an admin's)
    secrets.py    secrets bound to hosts, for the egress relay (an admin's)
    volumes.py    volumes: create, list, get, delete (an admin's)
    quota.py      the caller's usage and limits (admission and quotas)

Adding a route: put it in the module of its group (a new group: a new module, mounted in
``install``). A route a trainer calls per step is declared with ``rock.admin.doors.door`` so that
the app's door answers it ahead of FastAPI's layers; every other route is a plain FastAPI route.
"""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.context import PREFIX, Ctx
from rock.admin.front import FrontDoor
from rock.admin.rock_api import (cluster, data, egress, extra, images, lifecycle, quota, sandbox, secrets, snapshots,
                                 volumes, ws)


FRONT = FrontDoor()  # every role; no path of its own past the token gate


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount ROCK's routes. A proxy (role ``proxy``) gets the data plane and the status routes;
    creating, stopping, restarting and building are an admin's (``ctx.lifecycle``)."""
    admin = ctx.settings.role == "admin"
    app.include_router(sandbox.router(ctx, write=admin), prefix=PREFIX)
    if admin:
        app.include_router(lifecycle.router(ctx, ctx.lifecycle), prefix=PREFIX)
        app.include_router(images.router(ctx), prefix=PREFIX)
        app.include_router(snapshots.router(ctx), prefix=PREFIX)
        app.include_router(egress.router(ctx), prefix=PREFIX)
        app.include_router(secrets.router(ctx), prefix=PREFIX)
        app.include_router(volumes.router(ctx), prefix=PREFIX)
    app.include_router(data.router(ctx), prefix=PREFIX)
    app.include_router(extra.router(ctx), prefix=PREFIX)
    app.include_router(ws.router(ctx), prefix=PREFIX)
    app.include_router(cluster.router(ctx), prefix=PREFIX)
    app.include_router(quota.router(ctx), prefix=PREFIX)
