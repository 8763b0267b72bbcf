"""``GET …/quota``: the caller's namespace, what it holds now and its limits, and this node's room
(``rock.admin.sandboxes.admission``). Every token sees its own namespace only."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request

from rock.actions.response import RockResponse
from rock.admin.context import Ctx, ok


class Usage(BaseModel):
    sandboxes: int
    cpus: float
    memory_bytes: int
    env_hosts: int
    snapshots: int
    snapshot_bytes: int = 0  # what those snapshots take on disk


class Limits(BaseModel):
    """None: no limit of that kind."""

    sandboxes: int | None = None
    cpus: float | None = None
    memory_bytes: int | None = None
    env_hosts: int | None = None
    snapshots: int | None = None
    snapshot_bytes: int | None = None
    creates_per_minute: float | None = None
    create_burst: float | None = None


class NodeRoom(BaseModel):
    admission: bool
    cpus: float | None = None  # what this node may promise, overcommit included (None: a cluster's placement)
    memory_bytes: int | None = None
    cpus_reserved: float
    memory_reserved_bytes: int


class Quota(BaseModel):
    namespace: str | None = None
    usage: Usage
    limits: Limits
    node: NodeRoom


async def quota_of(ctx: Ctx, app, owner: str | None) -> dict:
    """The namespace's usage and limits as ``GET …/quota`` answers them."""
    envs = ctx.envs
    hosts = envs.env_hosts(owner) if envs is not None else 0
    kept = await ctx.sandboxes.snapshots(owner)
    return ctx.sandboxes.admission.usage(owner, hosts, len(kept), sum(s.size_bytes or 0 for s in kept))


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()

    @api.get("/quota", response_model=RockResponse[Quota])
    async def quota(request: Request):
        """The caller's namespace: running sandboxes, cpus, memory, env hosts, snapshots and the bytes
        they take on disk that it holds, its limits (None: none), and what this node may still promise."""
        return ok(await quota_of(ctx, request.app, ctx.owner(request)))

    return api
