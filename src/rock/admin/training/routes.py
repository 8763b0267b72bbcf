"""Training routes: ours under ``/apis/v1/training`` and AgentScope's training-box protocol under
``/apis/v1/training/agentscope`` (so agentscope-runtime's ``TrainingSandboxClient`` works with
that URL as its ``base_url``).

AgentScope's protocol: ``GET /healthz`` answers ``OK``; every POST takes ``{env_type, task_id,
instance_id, messages, params}`` (the action of ``/step`` travels in ``messages``, the split of
``/get_env_profile`` in ``params.split``) and answers ``{"success": true, "data": ...}``; an error
answers its 4xx/5xx with ``{"detail": message}``, which that client shows.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import PlainTextResponse, Response

from rock.admin.context import principal_of
from rock.admin.doors import door
from rock.admin.errors import status_and_body
from rock.jsonutil import dumps
from rock.admin.openapi import ErrorEnvelope, long_running
from rock.errors import RockError
from rock.training.service import TrainingService

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
    # Its name is shared with another model, so the schema names it by module: the module it
    # had when clients were generated from the schema, kept through the move into this folder.
    __module__ = "rock.admin.routes_training"

    state: list[Message]
    info: dict[str, Any] = Field(default_factory=dict)


State.model_rebuild(_types_namespace=globals())  # its names resolve here, not in the module it names


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
        429: "the namespace is at its env host or sandbox quota, or past its create rate (the limit is named)",
        503: "this node has no room for the instance's env sandbox, or it could not start (the reason is named)",
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
    """The admin's training service (made by the composition root, rock.admin.root)."""
    return app.state.rock.training


router = APIRouter(tags=["training"])


@router.post(BASE + "/profile", response_model=ProfileResult, responses=ERRORS)
async def profile(req: ProfileRequest, request: Request):
    """The task ids of a suite's split."""
    ids = await service(request.app).profile(req.env_type, req.split, req.params)
    return {"env_type": req.env_type, "split": req.split, "task_ids": ids}


# The calls a rollout makes per task (create, step, evaluate, info, release) are fast routes
# (rock.admin.doors): in an oracle job, route matching was ~30% of the admin's CPU, and the
# middleware stack another third of what was left.
@door(router, "POST", BASE + "/create", CreateRequest, schema_body=CreateRequest, response_model=State,
      responses=ERRORS, openapi_extra=CREATING)
async def create(ctx, req: CreateRequest, principal, call):
    """A new instance of a task: its first messages (system, user); ``info.instance_id`` names it."""
    return await service(call.app).create(req.env_type, req.task_id, req.instance_id, req.params, principal)


@door(router, "POST", BASE + "/step", StepRequest, schema_body=StepRequest, response_model=StepResult,
      responses=ERRORS)
async def step(ctx, req: StepRequest, principal, call):
    """One assistant message in; the environment's answer, the reward and whether it ended out.
    A suite that grades the last step (BFCL, reasoning-gym) puts what ``evaluate`` with
    ``details`` would answer in that step's ``info.evaluation``."""
    return await service(call.app).step(req.instance_id, req.action, req.params, principal)


@door(router, "POST", BASE + "/evaluate", EvaluateRequest, schema_body=EvaluateRequest,
      response_model=EvaluateResult, responses=ERRORS)
async def evaluate(ctx, req: EvaluateRequest, principal, call):
    """The instance's reward by the suite's own grader (``details`` with ``params.details``)."""
    out = await service(call.app).evaluate(req.instance_id, req.messages, req.params, principal)
    if isinstance(out, dict):
        return {"instance_id": req.instance_id, "reward": float(out.get("accuracy", 0.0)), "details": out}
    return {"instance_id": req.instance_id, "reward": float(out)}


@door(router, "POST", BASE + "/info", InstanceRequest, schema_body=InstanceRequest, response_model=dict[str, Any],
      responses=ERRORS)
async def info(ctx, req: InstanceRequest, principal, call):
    """The task's tools and facts."""
    return await service(call.app).info(req.instance_id, principal)


@door(router, "POST", BASE + "/release", InstanceRequest, schema_body=InstanceRequest, response_model=Released,
      responses=ERRORS)
async def release(ctx, req: InstanceRequest, principal, call):
    """Release an instance; released again answers ``released: false``."""
    return {"instance_id": req.instance_id, "released": await service(call.app).release(req.instance_id, principal)}


@router.get(BASE + "/instances")
async def instances(request: Request) -> list[dict[str, Any]]:
    """The caller's open instances."""
    return service(request.app).list(principal_of(request))


# -- AgentScope's protocol -------------------------------------------------------------------------


def as_error_body(exc: RockError) -> bytes:
    return dumps({"success": False, "detail": exc.message or type(exc).__name__})


def as_refusal(path: str, query: str, exc: RockError) -> Response:
    """The token gate's refusal on AgentScope's routes, in its shape."""
    return _as_error(exc)


def _as_error(exc: RockError) -> Response:
    return Response(as_error_body(exc), status_code=exc.status_code, media_type="application/json")


async def _as(request: Request, fn) -> Any:
    try:
        return {"success": True, "data": await fn(service(request.app), principal_of(request))}
    except RockError as exc:
        return _as_error(exc)


def _dict(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        from rock.errors import TrainingError

        raise TrainingError(f"{what} must be a JSON object", "BadRequest")
    return value


@router.get(AGENTSCOPE + "/healthz", response_class=PlainTextResponse)
async def as_healthz() -> str:
    return "OK"


@router.post(AGENTSCOPE + "/get_env_profile", response_model=ASReply, responses=AS_ERRORS)
async def as_profile(req: ASRequest, request: Request):
    params = req.params or {}
    return await _as(request, lambda s, o: s.profile(req.env_type, params.get("split", "train"), params))


def as_errors(exc: Exception, where: str) -> tuple[int, bytes]:
    """AgentScope's error shape for what the service refuses; the admin's for the rest (a body
    that is not JSON, or not the request's shape)."""
    if isinstance(exc, RockError):
        return exc.status_code, as_error_body(exc)
    return status_and_body(exc, where)


def _as_door(path: str, name: str, **fastapi_kwargs):
    """AgentScope's per-task calls: fast routes (as ours above), in its envelope."""
    def register(fn):
        async def handler(ctx, req: ASRequest, principal, call):
            return {"success": True, "data": await fn(service(call.app), req, principal)}

        handler.__name__ = name
        door(router, "POST", AGENTSCOPE + path, ASRequest, schema_body=ASRequest, errors=as_errors,
             response_model=ASReply, responses=AS_ERRORS, **fastapi_kwargs)(handler)
        return fn
    return register


@_as_door("/create", "as_create", openapi_extra=CREATING)
async def _as_create(svc: TrainingService, req: ASRequest, owner):
    return await svc.create(req.env_type, req.task_id, req.instance_id, req.params, owner)


@_as_door("/step", "as_step")
async def _as_step(svc: TrainingService, req: ASRequest, owner):
    return await svc.step(req.instance_id, _dict(req.messages, "messages (the action)"), req.params, owner)


@_as_door("/evaluate", "as_evaluate")
async def _as_evaluate(svc: TrainingService, req: ASRequest, owner):
    return await svc.evaluate(req.instance_id, req.messages, req.params, owner)


@_as_door("/get_info", "as_info")
async def _as_info(svc: TrainingService, req: ASRequest, owner):
    return await svc.info(req.instance_id, owner)


@_as_door("/release", "as_release")
async def _as_release(svc: TrainingService, req: ASRequest, owner):
    return await svc.release(req.instance_id, owner)
