"""Gymnasium session routes under ``/apis/v1/envs/gym``.

JSON in for opening and resetting; gymwire bodies (``application/octet-stream``, see
``rock/agent/envhost/gymwire.py``) for actions and for everything an env returns, passed through from
the env host untouched. Errors use the admin's error envelope with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal
from urllib.parse import unquote

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rock.actions.numbers import numbers_only
from rock.admin.envs import gem
from rock.admin.context import principal_of
from rock.admin.doors import door
from rock.admin.errors import status_and_body
from rock.admin.openapi import errors, long_running
from rock.envs.forking import MAX_FORK, MAX_FULL_FORK
from rock.envs.gym.sessions import GymImageRequest, GymSessionInfo, GymSessionRequest, GymSessions

GYM = "/apis/v1/envs/gym"
router = APIRouter(tags=["gym"])

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
# 404: no such session (closed, reaped) or env; 409: an earlier call timed out; 410: its env host died
_CALL = errors(400, 404, 409, 410, 504)
_VALUE = {200: {"description": "a gymwire body: the env's result, arrays as raw bytes", "content": _BINARY}, **_CALL}
_NDJSON = {"application/x-ndjson": {"schema": {"type": "string"}}}


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | list[int | None] | None = Field(default=None, description="one int (env i gets seed + i) or one per env")
    options: dict | None = None


class Closed(BaseModel):
    # Its name is shared with another model, so the schema names it by module: the module it
    # had when clients were generated from the schema, kept through the move into this folder.
    __module__ = "rock.admin.gym_routes"

    session_id: str
    closed: bool


class GymForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, le=MAX_FORK, description=f"how many sessions to fork: 1 to {MAX_FORK} "
                   f"(replay), 1 to {MAX_FULL_FORK} (full)")
    _numbers = numbers_only("n")  # 32.0 is JSON Schema's integer too; a boolean or a string is not
    how: Literal["replay", "full"] = Field(default="replay", description="replay (every backend): the seeded reset "
                                           "and actions replayed and checked; full (gvisor): a memory fork of the "
                                           "session's sandbox, any env")


class GymForked(gem.ForkReport):
    session_id: str = Field(description="the session forked")
    sessions: list[GymSessionInfo] = Field(description="the new sessions, each where the source was")


class Lease(BaseModel):
    session_id: str
    lease: float


def sessions(app) -> GymSessions:
    """The admin's gym sessions (made by the composition root, rock.admin.root)."""
    return app.state.rock.gym


def _value(body: bytes) -> Response:
    return Response(body, media_type="application/octet-stream")


@router.post(GYM + "/images", responses={200: {"description": "progress lines, then the image or an error",
                                                "content": _NDJSON}, **errors(400, 422)})
async def build_image(req: GymImageRequest, request: Request) -> StreamingResponse:
    """Build (or find) the env image of a session's source and packages, streaming progress as
    JSON lines: ``{"progress": ...}``, then ``{"image": {...}}`` or ``{"error": {...}}``."""
    svc = sessions(request.app)
    svc.image_spec(req)  # refusals (hf://, bad names) as a 4xx before any streaming
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue = asyncio.Queue()

    def progress(line: str) -> None:  # called from the build's thread
        loop.call_soon_threadsafe(lines.put_nowait, {"progress": line})

    async def build():
        try:
            image = await svc.image(req, progress)
            await lines.put({"image": image.model_dump()})
        except Exception as exc:  # noqa: BLE001 - reported as the stream's last line
            status, body = status_and_body(exc, GYM + "/images")
            await lines.put({"error": json.loads(body), "status": status})

    async def stream():
        task = asyncio.create_task(build())
        try:
            while True:
                item = await lines.get()
                yield json.dumps(item) + "\n"
                if "image" in item or "error" in item:
                    return
        finally:
            if not task.done():
                task.cancel()

    return StreamingResponse(stream(), media_type="application/x-ndjson")


@router.post(GYM + "/sessions", response_model=GymSessionInfo, responses=errors(400, 404, 422, 429, 503, 504),
             openapi_extra=long_running(1800, "starts the session's sandbox; builds its env image the first time"))
async def open_session(req: GymSessionRequest, request: Request) -> GymSessionInfo:
    """Open a session: its sandbox, its env (or vector env), and its contract (spaces, metadata)."""
    return await sessions(request.app).open(req, principal_of(request))


@router.get(GYM + "/sessions", responses=errors())
async def list_sessions(request: Request) -> dict:
    return {"sessions": sessions(request.app).listing(principal_of(request))}


# A session's reset and step are fast routes (rock.admin.doors): FastAPI's routing layers cost
# about as much as the rest of a step. The session id is unquoted once more, as it always was.
@door(router, "POST", GYM + "/sessions/{session_id}/reset", bytes, schema_body=ResetBody,
      media_type="application/octet-stream", responses=_VALUE, response_class=Response)
async def reset(ctx, body: bytes, principal, call) -> bytes:
    """``(observation, info)``."""
    req = ResetBody.model_validate_json(body or b"{}")
    return await sessions(call.app).reset(unquote(call.params["session_id"]), principal, req.seed, req.options)


@door(router, "POST", GYM + "/sessions/{session_id}/step", bytes, media_type="application/octet-stream",
      responses=_VALUE, response_class=Response,
      openapi_extra={"requestBody": {"required": True, "content": _BINARY,
                                     "description": "the action (a vector env: one per env) as a gymwire body"}})
async def step(ctx, body: bytes, principal, call) -> bytes:
    """``(observation, reward, terminated, truncated, info)``."""
    return await sessions(call.app).step(unquote(call.params["session_id"]), principal, body)


@router.get(GYM + "/sessions/{session_id}/render", responses=_VALUE, response_class=Response)
async def render(session_id: str, request: Request, env_index: int = Query(default=0, ge=0)) -> Response:
    """The env's frame (an RGB array for ``render_mode="rgb_array"``), or null."""
    return _value(await sessions(request.app).render(session_id, principal_of(request), env_index))


@router.post(GYM + "/sessions/{session_id}/fork", response_model=GymForked, responses=errors(400, 404, 409, 410, 422, 503, 504),
             openapi_extra=long_running(1800, "starts a sandbox per new session and replays the episode into it"))
async def fork(session_id: str, req: GymForkRequest, request: Request) -> GymForked:
    """``n`` new sessions that go on from this one's state: each opened as this one was, in a
    sandbox of its own, with its seeded reset and the actions since replayed and its observation
    checked against this one's (409 EnvNotDeterministic where it differs; 400 before a seeded
    reset). A vector session forks whole. ``how="full"`` (gVisor): a memory fork of the session's
    sandbox per child instead, any env, no replay. Then each steps on its own (``rock.envs.gym.forks``)."""
    children, steps = await sessions(request.app).fork(session_id, principal_of(request), req.n, req.how)
    return GymForked(session_id=session_id, sessions=children, steps=steps)


@router.post(GYM + "/sessions/{session_id}/keepalive", response_model=Lease, responses=_CALL)
async def keepalive(session_id: str, request: Request) -> Lease:
    """Renew the session's lease (the SDK does this while its process lives)."""
    return Lease(session_id=session_id, lease=sessions(request.app).keepalive(session_id, principal_of(request)))


@router.delete(GYM + "/sessions/{session_id}", response_model=Closed, responses=_CALL)
async def close(session_id: str, request: Request) -> Closed:
    """Close the session and stop its sandbox."""
    return Closed(session_id=session_id, closed=await sessions(request.app).close(session_id, principal_of(request)))
