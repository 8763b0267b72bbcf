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
from rock.admin.front import FrontDoor
from rock.admin.envs import gem, gym


# every role; no path of its own past the token gate
FRONT = FrontDoor(env_calls={gem.GEM + "/reset": "reset", gem.GEM + "/step": "step",
                             gem.GEM + "/vec/reset": "vec_reset", gem.GEM + "/vec/step": "vec_step",
                             gym.GYM + "/sessions/{session_id}/step": "gym_step",
                             gym.GYM + "/sessions/{session_id}/reset": "gym_reset"})


def install(app: FastAPI, ctx: Ctx) -> None:
    """A made env's reset and step on every role (they create nothing); making envs, vector envs,
    the catalog and gym sessions on an admin only."""
    app.include_router(gem.steps)
    if ctx.settings.role == "admin":
        app.include_router(gem.router)
        app.include_router(gym.router)

