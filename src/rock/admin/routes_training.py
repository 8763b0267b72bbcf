"""Training routes: ours under ``/apis/v1/training`` and AgentScope's training-box protocol under
``/apis/v1/training/agentscope`` (so agentscope-runtime's ``TrainingSandboxClient`` works with
that URL as its ``base_url``).

AgentScope's protocol: ``GET /healthz`` answers ``OK``; every POST takes ``{env_type, task_id,
instance_id, messages, params}`` (the action of ``/step`` travels in ``messages``, the split of
``/get_env_profile`` in ``params.split``) and answers ``{"success": true, "data": ...}``; an error
answers its 4xx/5xx with ``{"detail": message}``, which that client shows.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response

from rock.admin.errors import status_and_body
from rock.admin.hotpath import read_body
from rock.admin.jsonutil import dumps
from rock.admin.openapi import ErrorEnvelope, long_running
from rock.errors import RockError
from rock.training.service import TrainingService, TrainingSettings

BASE = "/apis/v1/training"
AGENTSCOPE = BASE + "/agentscope"
Message = dict[str, Any]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileRequest(_Req):
    env_type: str = Field(min_length=1, max_length=64, examples=["bfcl"])
    split: str = Field(default="train", description="train, val (test = val) or all")
    params: dict[str, Any] = Field(default_factory=dict, description="bfcl: {categories: [...]}; "
                                   "reasoning_gym: {generators, size, seed}")


class CreateRequest(_Req):
    env_type: str = Field(min_length=1, max_length=64)
    task_id: str = Field(min_length=1, max_length=256)
    instance_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    params: dict[str, Any] = Field(default_factory=dict)


class StepRequest(_Req):
    instance_id: str = Field(min_length=1, max_length=128)
    action: Message = Field(description='{"role": "assistant", "content": ..., "tool_calls": [...]}')
    params: dict[str, Any] = Field(default_factory=dict)


class EvaluateRequest(_Req):
    instance_id: str = Field(min_length=1, max_length=128)
    messages: list[Message] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description='{"details": true} for a dict of details')


class InstanceRequest(_Req):
    instance_id: str = Field(min_length=1, max_length=128)


class State(BaseModel):
    state: list[Message]
    info: dict[str, Any] = Field(default_factory=dict)


class StepResult(State):
    reward: float
    is_terminated: bool


class ProfileResult(BaseModel):
    env_type: str
    split: str
    task_ids: list[str]


class EvaluateResult(BaseModel):
    instance_id: str
    reward: float
    details: dict[str, Any] | None = None


class Released(BaseModel):
    instance_id: str
    released: bool


class ASRequest(BaseModel):
    """AgentScope's ServiceRequest (its client always sends every field)."""

    model_config = ConfigDict(extra="ignore")
    env_type: str | None = None
    task_id: str | None = None
    instance_id: str | None = None
    messages: Any = None
    params: dict[str, Any] | None = None


class ASReply(BaseModel):
    success: bool
    data: Any = None


# Errors answer the admin's envelope ({"status": "Failed", "message", "result": {"error_type"}}) on our
# routes, {"success": false, "detail"} on AgentScope's.
_WHY = {400: "bad input (a malformed action, an unknown split)", 404: "unknown env type, task or instance",
        409: "the instance id is taken", 410: "the instance was released (by request or after the idle TTL)",
        422: "the suite cannot run here (what to provide is in the message), or an invalid body",
        504: "the task's call ran past its timeout"}
CREATING = long_running(600, "starts the instance's env sandbox")
ERRORS = {code: {"model": ErrorEnvelope, "description": why} for code, why in _WHY.items()}


class ASError(BaseModel):
    success: bool
    detail: str


# AgentScope's routes answer its own error shape; a body that is not JSON (400) or not the
# request's shape (422) is refused before the route runs, in the admin's envelope.
AS_ERRORS = {code: {"model": ASError, "description": why} for code, why in
             {**_WHY, 401: "missing or unknown API token (tokens on)"}.items()}
for _code in (400, 422):
    AS_ERRORS[_code] = {"description": _WHY[_code] + " (an invalid body: the admin's envelope)", "content": {
        "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/ASError"},
                                                  {"$ref": "#/components/schemas/ErrorEnvelope"}]}}}}


def service(app) -> TrainingService:
    svc = getattr(app.state, "rock_training", None)
    if svc is None:
        from rock.admin import gem_routes

        ctx = app.state.rock
        svc = app.state.rock_training = TrainingService(
            gem_routes.service(app), ctx.settings.state_dir, ctx.settings.default_image, ctx.settings.host_python,
            TrainingSettings(), store=ctx.sandboxes.store)
    return svc


async def startup(app) -> None:
    """On admin start, after the env service's recovery: the stored instance ids serve again."""
    await service(app).recover()


async def shutdown(app) -> None:
    svc = getattr(app.state, "rock_training", None)
    if svc is not None:
        await svc.shutdown()


def _owner(request: Request) -> str | None:
    return request.app.state.rock.owner(request)


# -- the handlers, shared by the routed versions (which the OpenAPI schema documents) and the
# door below (which answers the per-task calls without FastAPI's routing layers) ---------------


async def _create(svc: TrainingService, req: CreateRequest, owner) -> dict:
    return await svc.create(req.env_type, req.task_id, req.instance_id, req.params, owner)


async def _step(svc: TrainingService, req: StepRequest, owner) -> dict:
    return await svc.step(req.instance_id, req.action, req.params, owner)


async def _evaluate(svc: TrainingService, req: EvaluateRequest, owner) -> dict:
    out = await svc.evaluate(req.instance_id, req.messages, req.params, owner)
    if isinstance(out, dict):
        return {"instance_id": req.instance_id, "reward": float(out.get("accuracy", 0.0)), "details": out}
    return {"instance_id": req.instance_id, "reward": float(out)}


async def _info(svc: TrainingService, req: InstanceRequest, owner) -> dict:
    return await svc.info(req.instance_id, owner)


async def _release(svc: TrainingService, req: InstanceRequest, owner) -> dict:
    return {"instance_id": req.instance_id, "released": await svc.release(req.instance_id, owner)}


async def _as_create(svc: TrainingService, req: "ASRequest", owner):
    return await svc.create(req.env_type, req.task_id, req.instance_id, req.params, owner)


async def _as_step(svc: TrainingService, req: "ASRequest", owner):
    return await svc.step(req.instance_id, _dict(req.messages, "messages (the action)"), req.params, owner)


async def _as_evaluate(svc: TrainingService, req: "ASRequest", owner):
    return await svc.evaluate(req.instance_id, req.messages, req.params, owner)


async def _as_info(svc: TrainingService, req: "ASRequest", owner):
    return await svc.info(req.instance_id, owner)


async def _as_release(svc: TrainingService, req: "ASRequest", owner):
    return await svc.release(req.instance_id, owner)


router = APIRouter(tags=["training"])


@router.post(BASE + "/profile", response_model=ProfileResult, responses=ERRORS)
async def profile(req: ProfileRequest, request: Request):
    """The task ids of a suite's split."""
    ids = await service(request.app).profile(req.env_type, req.split, req.params)
    return {"env_type": req.env_type, "split": req.split, "task_ids": ids}


@router.post(BASE + "/create", response_model=State, responses=ERRORS, openapi_extra=CREATING)
async def create(req: CreateRequest, request: Request):
    """A new instance of a task: its first messages (system, user); ``info.instance_id`` names it."""
    return await _create(service(request.app), req, _owner(request))


@router.post(BASE + "/step", response_model=StepResult, responses=ERRORS)
async def step(req: StepRequest, request: Request):
    """One assistant message in; the environment's answer, the reward and whether it ended out.
    A suite that grades the last step (BFCL, reasoning-gym) puts what ``evaluate`` with
    ``details`` would answer in that step's ``info.evaluation``."""
    return await _step(service(request.app), req, _owner(request))


@router.post(BASE + "/evaluate", response_model=EvaluateResult, responses=ERRORS)
async def evaluate(req: EvaluateRequest, request: Request):
    """The instance's reward by the suite's own grader (``details`` with ``params.details``)."""
    return await _evaluate(service(request.app), req, _owner(request))


@router.post(BASE + "/info", responses=ERRORS)
async def info(req: InstanceRequest, request: Request) -> dict[str, Any]:
    """The task's tools and facts."""
    return await _info(service(request.app), req, _owner(request))


@router.post(BASE + "/release", response_model=Released, responses=ERRORS)
async def release(req: InstanceRequest, request: Request):
    """Release an instance; released again answers ``released: false``."""
    return await _release(service(request.app), req, _owner(request))


@router.get(BASE + "/instances")
async def instances(request: Request) -> list[dict[str, Any]]:
    """The caller's open instances."""
    return service(request.app).list(_owner(request))


# -- AgentScope's protocol -------------------------------------------------------------------------


def as_error_body(exc: RockError) -> bytes:
    return dumps({"success": False, "detail": exc.message or type(exc).__name__})


def as_refusal(path: str, query: str, exc: RockError) -> Response:
    """The token gate's refusal on AgentScope's routes, in its shape."""
    return _as_error(exc)


def _as_error(exc: RockError) -> Response:
    return Response(as_error_body(exc), status_code=exc.status_code, media_type="application/json")


async def _as(request: Request, fn, req=None) -> Any:
    try:
        return {"success": True, "data": await fn(service(request.app), req, _owner(request))}
    except RockError as exc:
        return _as_error(exc)


def _dict(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        from rock.training.errors import TrainingError

        raise TrainingError(f"{what} must be a JSON object", "BadRequest")
    return value


@router.get(AGENTSCOPE + "/healthz", response_class=PlainTextResponse)
async def as_healthz() -> str:
    return "OK"


@router.post(AGENTSCOPE + "/get_env_profile", response_model=ASReply, responses=AS_ERRORS)
async def as_profile(req: ASRequest, request: Request):
    params = req.params or {}
    return await _as(request, lambda s, r, o: s.profile(req.env_type, params.get("split", "train"), params))


@router.post(AGENTSCOPE + "/create", response_model=ASReply, responses=AS_ERRORS, openapi_extra=CREATING)
async def as_create(req: ASRequest, request: Request):
    return await _as(request, _as_create, req)


@router.post(AGENTSCOPE + "/step", response_model=ASReply, responses=AS_ERRORS)
async def as_step(req: ASRequest, request: Request):
    return await _as(request, _as_step, req)


@router.post(AGENTSCOPE + "/evaluate", response_model=ASReply, responses=AS_ERRORS)
async def as_evaluate(req: ASRequest, request: Request):
    return await _as(request, _as_evaluate, req)


@router.post(AGENTSCOPE + "/get_info", response_model=ASReply, responses=AS_ERRORS)
async def as_info(req: ASRequest, request: Request):
    return await _as(request, _as_info, req)


@router.post(AGENTSCOPE + "/release", response_model=ASReply, responses=AS_ERRORS)
async def as_release(req: ASRequest, request: Request):
    return await _as(request, _as_release, req)


# -- the per-task calls at the ASGI door -------------------------------------------------------------

# path -> (request model, handler, AgentScope's envelope?)
HOT = {BASE + "/create": (CreateRequest, _create, False), BASE + "/step": (StepRequest, _step, False),
       BASE + "/evaluate": (EvaluateRequest, _evaluate, False), BASE + "/info": (InstanceRequest, _info, False),
       BASE + "/release": (InstanceRequest, _release, False),
       AGENTSCOPE + "/create": (ASRequest, _as_create, True), AGENTSCOPE + "/step": (ASRequest, _as_step, True),
       AGENTSCOPE + "/evaluate": (ASRequest, _as_evaluate, True),
       AGENTSCOPE + "/get_info": (ASRequest, _as_info, True), AGENTSCOPE + "/release": (ASRequest, _as_release, True)}
_JSON = [(b"content-type", b"application/json")]


class TrainingDoor:
    """The calls a rollout makes per task (create, step, evaluate, info, release), answered at
    the app's door (``rock.admin.hotpath.DoorApp.prefix_doors``) ahead of FastAPI and every
    middleware: those layers cost more admin CPU than the service's own work on such a call
    (measured in an oracle job: route matching was ~30% of the admin's CPU; after it, the
    middleware stack was another ~1/3 of what was left). Same models, auth, handlers and error
    mapping as the routed versions above, which the OpenAPI schema documents; timed into the
    metrics by itself, labelled by path. Anything else under the prefix is left to the routes
    (False: nothing received, nothing sent)."""

    def __init__(self, fastapi_app, meter=None):
        self.fastapi_app = fastapi_app
        self.meter = meter  # rock.admin.metrics.Metrics

    async def __call__(self, scope, receive, send) -> bool:
        path = scope["path"]
        hot = HOT.get(path) if scope["method"] == "POST" else None
        if hot is None:
            return False
        model, handler, agentscope = hot
        app = self.fastapi_app
        t0, status = time.perf_counter(), 500
        try:
            try:
                body = await read_body(receive)
                owner = app.state.rock.auth.principal(Headers(scope=scope))
                req = model.model_validate_json(body)
                out = await handler(service(app), req, owner)
                status, payload = 200, dumps({"success": True, "data": out} if agentscope else out)
            except RockError as exc:
                if agentscope:
                    status, payload = exc.status_code, as_error_body(exc)
                else:
                    status, payload = status_and_body(exc, path)
            except Exception as exc:  # noqa: BLE001 - mapped exactly like the routed handlers do
                status, payload = status_and_body(exc, path)
            await send({"type": "http.response.start", "status": status,
                        "headers": _JSON + [(b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
        finally:
            if self.meter is not None:
                self.meter.observe("POST", path, status, time.perf_counter() - t0, t0)
        return True
