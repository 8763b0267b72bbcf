"""``GET …/cluster/status``: the nodes, their resources and load, and sandboxes per node.

Served by every admin and proxy; on one machine without Ray it shows the one embedded node."""

from __future__ import annotations

import collections

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request

from rock.admin.context import Ctx, ok
from rock.worker.resources import Resources


class NodeStatus(BaseModel):
    name: str
    live: bool
    lost_reason: str | None = None
    host_name: str
    ip: str | None = None
    backend: str
    labels: dict[str, str]
    capacity: Resources
    reserved: Resources
    free: Resources
    loadavg: float
    sandboxes: int
    sandbox_states: dict[str, int]  # from the records: how many sandboxes per state on this node


class ClusterStatus(BaseModel):
    mode: str  # "embedded" (one machine, no Ray) or "cluster"
    placement: str
    overcommit: float
    nodes: list[NodeStatus]


class Envelope(BaseModel):
    status: str
    message: str | None = None
    error: str | None = None
    result: ClusterStatus


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()

    @api.get("/cluster/status", responses={200: {"model": Envelope}})
    async def status(request: Request):
        ctx.owner(request)  # an operator's view, but behind the same tokens as everything else
        clustered = ctx.worker.clustered
        nodes = ctx.worker.status()
        states: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for row in await ctx.sandboxes.held.counts():
            if row["state"] != "deleted":
                states[row["node_id"] or "local"][row["state"]] += row["n"]
        result = ClusterStatus(
            mode="cluster" if clustered else "embedded", placement=ctx.settings.placement,
            overcommit=ctx.settings.overcommit,
            nodes=[NodeStatus(**{k: v for k, v in n.items() if k in NodeStatus.model_fields},
                              sandbox_states=dict(states.get(n["name"], {}))) for n in nodes])
        return ok(result.model_dump(mode="json"))

    return api
