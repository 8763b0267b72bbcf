"""GEM env routes under ``/apis/v1/envs/gem``: ROCK's wire shapes plus our vector/catalog routes.

ROCK's four (what rl-rock's ``rock.make`` sends): ``/make {env_id}`` -> ``{sandbox_id}``,
``/reset {sandbox_id, seed}`` -> ``{observation, info}``, ``/step {sandbox_id, action}`` ->
``{observation, reward, terminated, truncated, info}``, ``/close {sandbox_id}``. Raw bodies, no
envelope; errors use the admin's error envelope with a 4xx/5xx status. The ``sandbox_id`` of these
routes is an env handle (``<env sandbox>:<env>``): many envs share one sandbox.

The step path is kept lean: the body the env host encoded is returned as is, and reset, step and
vec-step are fast routes (rock.admin.doors), skipping FastAPI's routing layers (~0.2 ms here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from rock.actions.numbers import numbers_only
from rock.admin.context import principal_of
from rock.admin.doors import door
from rock.jsonutil import dumps, loads
from rock.admin.openapi import CATALOG_PROBE, doc, long_running
from rock.envs import vector
from rock.envs.catalog import UserEnv
from rock.envs.forking import MAX_FORK
from rock.envs.gym.sessions import catalog_entries
from rock.envs.service import EnvService

GEM = "/apis/v1/envs/gem"
router = APIRouter(tags=["gem"])  # the admin's: make, close, vector envs, catalog, registration
# A single env's reset and step, by its handle (the env host in its sandbox holds the env): served
# by every role, a proxy included; nothing here creates a sandbox or an env.
steps = APIRouter(tags=["gem"])


class _Compat(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Ours(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MakeRequest(_Compat):
    env_id: str = Field(min_length=1, max_length=256)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # ours: reach the env's constructor
    timeout: float | None = Field(default=None, gt=0, le=86400)  # ours: per-call timeout inside the env


class HandleRequest(_Compat):
    sandbox_id: str = Field(min_length=1)


class ResetRequest(HandleRequest):
    seed: int | None = None


class StepRequest(HandleRequest):
    action: Any = None


class VecMakeRequest(_Ours):
    env_id: str = Field(min_length=1, max_length=256)
    num_envs: int = Field(ge=1, le=65536)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    vec_kwargs: list[dict[str, Any]] | None = None
    autoreset: str = "same_step"
    timeout: float | None = Field(default=None, gt=0, le=86400)


class VecRequest(_Ours):
    vec_id: str = Field(min_length=1)


class VecResetRequest(VecRequest):
    seed: int | list[int | None] | None = None
    indices: list[int] | None = None


class VecStepRequest(VecRequest):
    # {index: action} for a subset, or one action per env (null: leave that env alone)
    actions: Annotated[dict[int, Any], WithJsonSchema({"type": "object", "additionalProperties": True,
                                                        "propertyNames": {"pattern": "^[0-9]+$"}})] | list[Any]


class ForkRequest(HandleRequest):
    n: int  # ours: 1 to rock.envs.forking.MAX_FORK, checked there with a message that says so
    how: str = "replay"  # ours: replay (every backend) or full (gvisor): rock.envs.forking


class ForkReport(BaseModel):
    """What every fork answers beside its children (an env's, a vector env's, a gym session's)."""

    steps: int = Field(description="the calls each child replayed after its seeded reset to stand where its source "
                       "stands (a vector env: its busiest lane's count); 0 for a full fork, which copies the "
                       "sandbox's memory and replays nothing")


class Forked(ForkReport):
    sandbox_id: str = Field(description="the source env's handle")
    env_id: str
    envs: list[str] = Field(description="the children's handles, each at the source's observation and step")


class VecForkRequest(VecRequest):
    n: int = Field(ge=1, le=MAX_FORK, description=f"how many vector envs to fork: 1 to {MAX_FORK}")
    _numbers = numbers_only("n")  # 32.0 is JSON Schema's integer too; a boolean or a string is not


class UnregisterRequest(_Ours):
    id: str


class Made(BaseModel):
    sandbox_id: str = Field(description="the env handle: '<env sandbox>:<env>'")
    env_id: str


class Closed(BaseModel):
    # Its name is shared with another model, so the schema names it by module: the module it
    # had when clients were generated from the schema, kept through the move into this folder.
    __module__ = "rock.admin.gem_routes"

    sandbox_id: str
    closed: bool


class EnvIds(BaseModel):
    env_id: list[str]


class VecMade(BaseModel):
    vec_id: str
    env_id: str
    num_envs: int
    envs: list[str]
    autoreset: str


class VecForked(ForkReport):
    vec_id: str = Field(description="the vector env forked")
    vecs: list[VecMade] = Field(description="the new vector envs, each lane where the source's lane is")


class VecClosed(BaseModel):
    vec_id: str
    closed: Any


def _doc(model, result, codes=(400, 404), **kw) -> dict:
    """GEM's routes answer bare JSON (no envelope); errors use the admin's error envelope."""
    return doc(model, result=result, codes=codes, envelope=False, **kw)


# Routes that start an env sandbox (or probe the catalog in one, the first time): declared long.
ENV_START = long_running(600, "starts an env sandbox (and builds its env image the first time)")
PROBE = CATALOG_PROBE

# 409: an earlier call timed out (close and make again); 410: its env host died; 504: past the timeout
_CALL = (400, 404, 409, 410, 504)


def service(app) -> EnvService:
    """The app's env service (made by the composition root, rock.admin.root)."""
    return app.state.rock.envs


async def startup(app) -> None:
    """Pick up env sandboxes that outlived a restart, so they are listed, TTL-reaped and refilled
    (what the root does on an admin's start, after the sandboxes are reconciled)."""
    await service(app).recover()


def hosted_envs(app) -> dict[str, list[dict]]:
    """For the sandbox list: env sandbox id -> the envs it hosts ({handle, env_id, created, last_used, vec})."""
    return service(app).envs_by_sandbox()


def _json(data) -> Response:
    return Response(data if isinstance(data, bytes) else dumps(data), media_type="application/json")


# -- ROCK's GEM routes ------------------------------------------------------------------------


def _vec_step_args(body: bytes) -> tuple[str, list | dict]:
    """(vec_id, actions) of a vector step. The shape the SDK sends for a full step (a list of
    actions) is taken as parsed, which is all the model would check for it (validating 256
    actions through it costs more than the rest of the admin's work on the step); anything
    else, errors included, goes through the model."""
    try:
        data = loads(body)
    except ValueError:
        data = None
    if (type(data) is dict and len(data) == 2 and type(data.get("vec_id")) is str and data["vec_id"]
            and type(data.get("actions")) is list):
        return data["vec_id"], data["actions"]
    req = VecStepRequest.model_validate_json(body)
    return req.vec_id, req.actions


@router.post(GEM + "/make", **_doc(MakeRequest, Made, (400, 404, 422, 429, 503, 504), openapi_extra=ENV_START))
async def make(request: Request) -> Response:
    req = MakeRequest.model_validate_json(await request.body())
    rec = await service(request.app).make(req.env_id, req.kwargs, principal_of(request), req.timeout)
    return _json({"sandbox_id": rec.handle, "env_id": rec.env_id})


# A single env's reset and step are fast routes (rock.admin.doors): the body the env host
# encoded is returned as it is.
@door(steps, "POST", GEM + "/reset", ResetRequest, **_doc(ResetRequest, dict[str, Any], _CALL))
async def reset(ctx, req: ResetRequest, principal, call) -> bytes:
    return await service(call.app).reset(req.sandbox_id, req.seed, principal)


@door(steps, "POST", GEM + "/step", StepRequest, **_doc(StepRequest, dict[str, Any], _CALL))
async def step(ctx, req: StepRequest, principal, call) -> bytes:
    return await service(call.app).step(req.sandbox_id, req.action, principal)


@router.post(GEM + "/close", **_doc(HandleRequest, Closed))
async def close(request: Request) -> Response:
    req = HandleRequest.model_validate_json(await request.body())
    closed = await service(request.app).close(req.sandbox_id, principal_of(request))
    return _json({"sandbox_id": req.sandbox_id, "closed": closed})


@router.post(GEM + "/fork", **_doc(ForkRequest, Forked, (400, 404, 409, 410, 422, 504)))
async def fork(request: Request) -> Response:
    """n envs that go on from the env's current state: ``replay``, its seeded reset and actions
    replayed in new envs and checked (409 EnvNotDeterministic where they do not reach it), or
    ``full`` (gVisor), a memory fork of its sandbox per child; rock.envs.forking."""
    req = ForkRequest.model_validate_json(await request.body())
    children, steps = await service(request.app).fork(req.sandbox_id, req.n, principal_of(request), req.how)
    return _json({"sandbox_id": req.sandbox_id, "env_id": children[0].env_id, "envs": [c.handle for c in children],
                  "steps": steps})


@router.post(GEM + "/list", **doc(result=EnvIds, envelope=False, codes=(503,), openapi_extra=PROBE))
async def list_ids(request: Request) -> Response:
    """ROCK's list: the env ids that can be made (``{"env_id": [...]}``)."""
    entries = await service(request.app).catalog_entries(principal_of(request), deep=True)
    return _json({"env_id": [e.id for e in entries if e.available]})


# -- ours: catalog, registration, hosted envs ---------------------------------------------------


@router.get(GEM + "/catalog", **doc(result=dict[str, list[dict[str, Any]]], envelope=False, codes=(503,),
                                    openapi_extra=PROBE))
async def catalog(request: Request, deep: bool = True) -> Response:
    entries = await catalog_entries(service(request.app), request.app.state.rock.gym, principal_of(request), deep)
    return _json({"envs": [e.model_dump() for e in entries]})


@router.post(GEM + "/register", **_doc(UserEnv, dict[str, Any], (400, 422, 503), openapi_extra=PROBE))
async def register(request: Request, replace: bool = False) -> Response:
    env = UserEnv.model_validate_json(await request.body())
    svc = service(request.app)
    runner = None if svc.catalog.is_cached("ids") else await svc.probe_runner(principal_of(request))
    return _json((await svc.catalog.register(env, runner, replace=replace, owner=principal_of(request))).model_dump())


@router.post(GEM + "/unregister", **_doc(UnregisterRequest, dict[str, Any], ()))
async def unregister(request: Request) -> Response:
    req = UnregisterRequest.model_validate_json(await request.body())
    return _json({"id": req.id, "removed": service(request.app).catalog.unregister(req.id, principal_of(request))})


@router.get(GEM + "/hosted", **doc(result=dict[str, list[dict[str, Any]]], envelope=False))
async def hosted(request: Request) -> Response:
    owner = principal_of(request)
    svc = service(request.app)
    return _json({sid: envs for sid, envs in svc.envs_by_sandbox().items()
                  if (sb := svc.by_id.get(sid)) is None or sb.owner == owner})


# -- ours: vector envs ----------------------------------------------------------------------------


def _vec_made(vec: vector.VecRecord) -> dict:
    """A vector env as its make answers it (``VecMade``)."""
    return {"vec_id": vec.vec_id, "env_id": vec.env_id, "num_envs": len(vec.handles), "envs": vec.handles,
            "autoreset": vec.autoreset}


@router.post(GEM + "/vec/make", **_doc(VecMakeRequest, VecMade, (400, 404, 422, 429, 503, 504), openapi_extra=ENV_START))
async def vec_make(request: Request) -> Response:
    req = VecMakeRequest.model_validate_json(await request.body())
    vec = await vector.make_vec(service(request.app), req.env_id, req.num_envs, principal_of(request), req.kwargs,
                                req.vec_kwargs, req.autoreset, req.timeout)
    return _json(_vec_made(vec))


@router.post(GEM + "/vec/reset", **_doc(VecResetRequest, dict[str, Any], _CALL))
async def vec_reset(request: Request) -> Response:
    req = VecResetRequest.model_validate_json(await request.body())
    svc = service(request.app)
    vec = vector.get_vec(svc, req.vec_id, principal_of(request))
    return _json(await vector.vec_reset(svc, vec, req.seed, req.indices))


@door(router, "POST", GEM + "/vec/step", bytes, **_doc(VecStepRequest, dict[str, Any], _CALL))  # a fast route
async def vec_step(ctx, body: bytes, principal, call) -> bytes:
    vec_id, actions = _vec_step_args(body)
    svc = service(call.app)
    return await vector.vec_step(svc, vector.get_vec(svc, vec_id, principal), actions)


@router.post(GEM + "/vec/fork", **_doc(VecForkRequest, VecForked, (400, 404, 409, 410, 422, 504)))
async def vec_fork(request: Request) -> Response:
    """``n`` vector envs that go on from this one's state, lane by lane: each lane's seeded reset,
    actions and autoresets replayed in new envs beside it and checked (409 EnvNotDeterministic
    where a lane does not reach it, or was reset without a seed); rock.envs.vector."""
    req = VecForkRequest.model_validate_json(await request.body())
    svc = service(request.app)
    vec = vector.get_vec(svc, req.vec_id, principal_of(request))
    children, steps = await vector.vec_fork(svc, vec, req.n)
    return _json({"vec_id": vec.vec_id, "steps": steps, "vecs": [_vec_made(c) for c in children]})


@router.post(GEM + "/vec/close", **_doc(VecRequest, VecClosed))
async def vec_close(request: Request) -> Response:
    req = VecRequest.model_validate_json(await request.body())
    svc = service(request.app)
    vec = vector.get_vec(svc, req.vec_id, principal_of(request))
    return _json({"vec_id": vec.vec_id, "closed": await vector.vec_close(svc, vec)})
