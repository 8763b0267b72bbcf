"""What every route needs, built once per app: settings, auth, the sandbox service, helpers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from rock.admin.auth import Auth
from rock.jsonutil import dumps
from rock.admin.sandboxes import Sandboxes
from rock.config import Settings
from rock.errors import BadRequest
from rock.worker.protocol import WorkerOps

if TYPE_CHECKING:  # made by the composition root (rock.admin.root), which imports this module
    from rock.chat.hub import ChatHub
    from rock.admin.rollouts import JobBook
    from rock.admin.sandboxes.lifecycle import Lifecycle
    from rock.admin.templates import Templates
    from rock.envs.gym.sessions import GymSessions
    from rock.envs.service import EnvService
    from rock.training.service import TrainingService

M = TypeVar("M", bound=BaseModel)
PREFIX = "/apis/envs/sandbox/v1"


@dataclass
class Ctx:
    """What a front door is installed with: the admin's settings, auth and long-lived services, as the
    composition root (``rock.admin.root.Root``) made them. The services a role does not run are None
    (a proxy has no gym sessions, training service, Chat hub, job book or templates)."""

    settings: Settings
    auth: Auth
    sandboxes: Sandboxes
    worker: WorkerOps
    started_at: float
    lifecycle: Lifecycle | None = None
    envs: EnvService | None = None
    gym: GymSessions | None = None
    training: TrainingService | None = None
    chat: ChatHub | None = None
    jobs: JobBook | None = None
    templates: Templates | None = None
    metrics: Any = None  # rock.admin.metrics.Metrics, set when the app installs it (it is HTTP middleware)

    def owner(self, conn: HTTPConnection) -> str | None:
        return self.auth.principal(conn.headers)

    async def agent(self, conn: HTTPConnection, sandbox_id: str):
        return await self.sandboxes.agent(sandbox_id, self.auth.principal(conn.headers))


def principal_of(conn: HTTPConnection) -> str | None:
    """The caller's namespace (None with tokens off), for routes declared at module level, whose
    context is the app's (``app.state.rock``). Raises Unauthorized."""
    return conn.app.state.rock.owner(conn)


def ok_body(result=None) -> bytes:
    """ROCK's success envelope as JSON bytes (what a fast route, rock.admin.doors, answers)."""
    return dumps({"status": "Success", "message": None, "error": None, "result": result})


def ok(result=None) -> Response:
    """ROCK's success envelope, encoded directly (no response-model pass on the hot path)."""
    return Response(ok_body(result), media_type="application/json")


async def parse(request: Request, model: type[M]) -> M:
    body = await request.body()
    if not body.strip():
        raise BadRequest(f"request body is empty; expected a JSON object for {model.__name__}")
    return model.model_validate_json(body)


def query(request: Request, model: type[M]) -> M:
    return model.model_validate(dict(request.query_params))


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def check_path(path: str, what: str = "path") -> str:
    """Paths inside a sandbox: no NUL, no '..' components (a request never walks upward)."""
    if not path or "\x00" in path:
        raise BadRequest(f"{what} must be a non-empty path without NUL bytes")
    if ".." in path.replace("\\", "/").split("/"):
        raise BadRequest(f"{what} {path!r} contains '..'; use a path without parent references")
    return path
