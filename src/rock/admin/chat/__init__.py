"""The Chat protocol's front door (an OpenAI-compatible model endpoint inside every sandbox).

    routes.py     the routes: start a sandbox's endpoint, the trainer's exchange, trajectories
    ws.py         the trainer's fast path as a WebSocket

The hub, the wire formats and the record log are the domain's (``rock.chat``); this folder only
translates HTTP and WebSocket onto them. Adding a route: in ``routes.py`` (the trainer's side; a
per-call route beside the exchange it serves).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rock.admin.front import FrontDoor

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rock.admin.context import Ctx

FRONT = FrontDoor(roles=("admin",))


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the Chat routes on an admin (each endpoint starts with a sandbox's session; a proxy
    has none). The hub is the composition root's (``ctx.chat``): it closes with the admin."""
    from rock.admin.chat import routes

    if ctx.settings.role != "admin" or ctx.chat is None:
        return
    app.include_router(routes.router(ctx, ctx.chat))
