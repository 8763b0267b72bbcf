"""Training tasks' front door: ours under ``/apis/v1/training`` and AgentScope's training-box
protocol under ``/apis/v1/training/agentscope`` (``routes.py``; the service is rock.training).

Adding a route: in ``routes.py``; a call a rollout makes per task with ``rock.admin.doors.door``
(AgentScope's with ``_as_door``, which gives it AgentScope's envelope and error shape).
"""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.context import Ctx
from rock.admin.front import FrontDoor, Refusal
from rock.admin.training import routes

# AgentScope's health answers without a token; its routes refuse a missing one in AgentScope's shape.
FRONT = FrontDoor(roles=("admin",), public=frozenset({("GET", routes.AGENTSCOPE + "/healthz")}),
                  refusals=(Refusal(routes.AGENTSCOPE + "/", routes.as_refusal),))


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the training routes, on an admin only: each instance starts a sandbox."""
    if ctx.settings.role == "admin":
        app.include_router(routes.router)

