"""What every route needs, built once per app: settings, auth, the sandbox service, helpers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from rock.admin.auth import Auth
from rock.jsonutil import dumps
from rock.admin.sandboxes import Sandboxes
from rock.config import Settings
from rock.errors import BadRequest
from rock.worker.protocol import WorkerOps

M = TypeVar("M", bound=BaseModel)
PREFIX = "/apis/envs/sandbox/v1"


@dataclass
class Ctx:
    settings: Settings
    auth: Auth
    sandboxes: Sandboxes
    worker: WorkerOps
    started_at: float

    def owner(self, conn: HTTPConnection) -> str | None:
        return self.auth.principal(conn.headers)

    async def agent(self, conn: HTTPConnection, sandbox_id: str):
        return await self.sandboxes.agent(sandbox_id, self.auth.principal(conn.headers))


def principal_of(conn: HTTPConnection) -> str | None:
    """The caller's namespace (None with tokens off), for routes declared at module level, whose
    context is the app's (``app.state.rock``). Raises Unauthorized."""
    return conn.app.state.rock.owner(conn)


def ok(result=None) -> Response:
    """ROCK's success envelope, encoded directly (no response-model pass on the hot path)."""
    body = dumps({"status": "Success", "message": None, "error": None, "result": result})
    return Response(body, media_type="application/json")


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
