"""RL environments' front door: GEM's routes (``/apis/v1/envs/gem``: ROCK's make/reset/step/close,
our vector envs, catalog and registration) and Gymnasium sessions (``/apis/v1/envs/gym``).

    gem.py  GEM, ROCK's wire shapes; reset, step and vec-step are fast routes (rock.admin.doors)
    gym.py  Gymnasium sessions, gymwire bodies; a session's reset and step are fast routes

The envs themselves live in rock.envs (service, catalog, vector envs, image builds); this folder
only translates HTTP onto them. Adding a route: in the module of its protocol; a per-step route
with ``rock.admin.doors.door``.
"""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.context import Ctx
from rock.admin.envs import gem, gym


def install(app: FastAPI, ctx: Ctx) -> None:
    """A made env's reset and step on every role (they create nothing); making envs, vector envs,
    the catalog and gym sessions on an admin only."""
    app.include_router(gem.steps)
    if ctx.settings.role == "admin":
        app.include_router(gem.router)
        app.include_router(gym.router)


async def startup(app: FastAPI) -> None:
    """On an admin's start: env sandboxes that outlived a restart serve again; stale builds go.
    A proxy neither recovers env sandboxes nor reaps builds."""
    if app.state.rock.settings.role == "admin":
        await gem.startup(app)
        await gym.startup(app)


async def shutdown(app: FastAPI) -> None:
    """Gym sessions' sandboxes go (their clients went with the admin); GEM's reaper stops."""
    await gym.shutdown(app)
    await gem.shutdown(app)
