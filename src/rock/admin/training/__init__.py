"""Training tasks' front door: ours under ``/apis/v1/training`` and AgentScope's training-box
protocol under ``/apis/v1/training/agentscope`` (``routes.py``; the service is rock.training).

Adding a route: in ``routes.py``; a call a rollout makes per task with ``rock.admin.doors.door``
(AgentScope's with ``_as_door``, which gives it AgentScope's envelope and error shape).
"""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.context import Ctx
from rock.admin.training import routes


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the training routes, on an admin only: each instance starts a sandbox."""
    if ctx.settings.role == "admin":
        app.include_router(routes.router)

