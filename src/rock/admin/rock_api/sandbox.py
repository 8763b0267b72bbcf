"""Control-plane routes in ROCK's protocol: start, status, stop, delete, list, batch status."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from rock.actions.response import (IsAliveResponse, SandboxListResponse, SandboxStartResponse, SandboxStatusResponse,
                                   StateTransitionRecord)
from rock.actions.sandbox import BatchStatusRequest, SandboxIdRequest, SandboxStartRequest
from rock.admin.sandboxes.ids import namespaced_id
from rock.admin.sandboxes.listing import SandboxQuery
from rock.admin.context import Ctx, iso, ok, ok_body, parse, query
from rock.admin.doors import door
from rock.jsonutil import dumps
from rock.admin.sandboxes.lifecycle import transition_deadline
from rock.admin.openapi import SANDBOX, doc
from rock.admin.sandboxes.start_checks import check_start_request
from rock.admin.store import SandboxRecord

# ROCK's State enum has no "failed"; such a sandbox is "stopped" with a failed start stage.
# "lost" (its node went away; it may come back) is not in it either: "stopped" there, with the reason.
_WIRE_STATE = {"failed": "stopped", "lost": "stopped", "paused": "running"}  # paused: is_alive false, lifecycle_state says it
# Never shown back: credentials, and bookkeeping that has its own status field.
_PRIVATE_SPEC = {"registry_password", "registry_username", "archived_at", "env", "e2b_token", "prewarm"}
_STAGE = {"pending": "running", "running": "success", "paused": "success", "stopped": "success", "failed": "failed",
          "deleted": "success", "lost": "failed"}


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")  # ROCK's GET routes: unknown query parameters are ignored
    sandbox_id: str = Field(min_length=1)
    include_all_states: bool = False


class ListQuery(SandboxQuery):
    page_size: int = Field(default=100, ge=1, le=1000)


class BatchStatuses(BaseModel):
    statuses: list[SandboxStatusResponse]


def _meta(h) -> dict:
    return {"user_id": h.get("x-user-id"), "experiment_id": h.get("x-experiment-id"),
            "namespace": h.get("x-namespace"), "cluster": h.get("x-cluster")}


async def start_action(ctx: Ctx, req: SandboxStartRequest, headers, owner: str | None) -> bytes:
    """``/start`` and ``/start_async`` themselves: the reply envelope, encoded."""
    check_start_request(req, ctx.worker, ctx.settings)
    # Replies once the sandbox is ready (unless "wait": false): rl-rock's start() then sees
    # is_alive on its first get_status and never reaches its 3-second sleep.
    wait = True if req.wait is None else req.wait
    if req.sandbox_id and owner is not None:
        # A caller's id lives in the caller's namespace: another token choosing the same id gets
        # a sandbox of its own, never a 409 that would say the id exists (or take it first).
        req = req.model_copy(update={"sandbox_id": namespaced_id(req.sandbox_id, owner)})
    record = await ctx.sandboxes.start(req, owner, _meta(headers), wait=wait)
    return dumps({"status": "Success", "message": None, "error": None, "result": start_result(record)})


def start_result(r: SandboxRecord) -> dict:
    return {"sandbox_id": r.sandbox_id, "host_name": r.host_name, "host_ip": r.host_ip, "cpus": r.cpus,
            "memory": r.memory, "state": r.state, "backend": r.backend, "code": None, "exit_code": None,
            "failure_reason": r.failure_reason}


def status_result(r: SandboxRecord, history: list[dict] | None = None, default_delete: int | None = None) -> dict:
    auto_stop = r.last_used_at + r.auto_clear_seconds if r.state == "running" and r.auto_clear_seconds else None
    due = transition_deadline(r, default_delete)
    return {
        "sandbox_id": r.sandbox_id,
        "status": {"start": {"status": _STAGE.get(r.state, "running"), "message": r.failure_reason or r.state}},
        "state": _WIRE_STATE.get(r.state, r.state), "lifecycle_state": r.state, "is_alive": r.state == "running",
        "host_name": r.host_name, "host_ip": r.host_ip, "image": r.image, "backend": r.backend,
        "user_id": r.user_id, "experiment_id": r.experiment_id, "namespace": r.namespace,
        "cpus": r.cpus, "memory": r.memory, "failure_reason": r.failure_reason,
        "auto_clear_seconds": r.auto_clear_seconds, "last_used_time": iso(r.last_used_at),
        "create_time": iso(r.created_at), "start_time": iso(r.started_at), "stop_time": iso(r.stopped_at),
        "delete_time": iso(r.deleted_at), "auto_stop_time": iso(auto_stop), "port_mapping": {},
        "archive_time": iso(r.spec.get("archived_at")),
        "auto_archive_time": iso(due[1]) if due and due[0] == "archived" else None,
        "auto_delete_time": iso(due[1]) if due and due[0] == "deleted" else None,
        "num_gpus": r.spec.get("num_gpus"), "disk": r.spec.get("disk"),
        "metadata": {k: v for k, v in r.spec.items() if k not in _PRIVATE_SPEC},
        "state_history": [
            {"from_state": h["from_state"] or "", "to_state": h["to_state"], "event": h["event"],
             "timestamp": iso(h["ts"]), "message": h["message"]} for h in (history or [])
        ],
    }


def router(ctx: Ctx, write: bool = True) -> APIRouter:
    """Status routes for every role; create, stop and delete only where ``write`` (role admin)."""
    api = APIRouter()
    svc = ctx.sandboxes
    keep = ctx.settings.auto_delete_seconds
    writes = api if write else APIRouter()  # a router that is never mounted

    # 400: a field this machine cannot honour (rock.admin.sandboxes.start_checks); 404: no such snapshot
    # of the caller's (``snapshot``); 409: the sandbox_id is taken
    start_doc = doc(SandboxStartRequest, result=SandboxStartResponse, codes=(400, 404, 409, 429, 503, 507))
    status_doc = doc(query=StatusQuery, result=SandboxStatusResponse, codes=(404,))
    id_doc = doc(SandboxIdRequest, result=str, codes=(400, 404, 409))

    # Fast routes (rock.admin.doors): in a burst of starts their routing was a third of the
    # admin's CPU per placement. Replies once the sandbox is ready (see start_action).
    async def start(ctx: Ctx, req: SandboxStartRequest, principal, call):
        return await start_action(ctx, req, call.headers, principal)

    for path, name in (("/start", "start"), ("/start_async", "start_async")):
        door(writes, "POST", path, SandboxStartRequest, require_body=True, name=name, **start_doc)(start)

    @api.get("/is_alive", **doc(query=StatusQuery, result=IsAliveResponse, codes=(404,)))
    async def is_alive(request: Request):
        q = query(request, StatusQuery)
        record = await svc.lookup(q.sandbox_id, ctx.owner(request))
        return ok({"is_alive": record.state == "running", "message": record.host_name or record.state})

    @api.get("/get_status", **status_doc)
    async def get_status(request: Request):
        q = query(request, StatusQuery)
        record = await svc.lookup(q.sandbox_id, ctx.owner(request), include_deleted=q.include_all_states)
        await svc.held.written(record.sandbox_id)
        return ok(status_result(record, await svc.store.history(record.sandbox_id), keep))

    @api.get("/get_sandbox_statistics", **doc(query=StatusQuery, result=dict, codes=SANDBOX))
    async def statistics(request: Request):
        q = query(request, StatusQuery)
        await ctx.agent(request, q.sandbox_id)
        return ok((await ctx.worker.stats(q.sandbox_id)).model_dump())

    @writes.post("/stop", **id_doc)
    async def stop(request: Request):
        req = await parse(request, SandboxIdRequest)
        await svc.stop(req.sandbox_id, ctx.owner(request))
        return ok(f"{req.sandbox_id} stopped")

    # every sandbox's last call: a fast route too
    @door(writes, "POST", "/delete", SandboxIdRequest, require_body=True, **id_doc)
    async def delete(ctx: Ctx, req: SandboxIdRequest, principal, call):
        await svc.delete(req.sandbox_id, principal)
        return ok_body(f"{req.sandbox_id} deleted")

    @api.get("/sandboxes", **doc(query=ListQuery, result=SandboxListResponse))
    async def list_sandboxes(request: Request):
        q = query(request, ListQuery)
        start = (q.page - 1) * q.page_size
        page, total = await svc.held.page(ctx.owner(request), q.labels(), q.state, False, start, q.page_size)
        hosted = ctx.envs.envs_by_sandbox()
        return ok({"items": [{**status_result(r, None, keep), "envs": hosted.get(r.sandbox_id, [])} for r in page],
                   "total": total, "page": q.page,
                   "page_size": q.page_size, "has_more": start + q.page_size < total})

    @api.post("/sandboxes/batch", **doc(BatchStatusRequest, result=BatchStatuses))
    async def batch(request: Request):
        req = await parse(request, BatchStatusRequest)
        # ROCK's batch answers for what exists and skips the rest (one read of the store for all).
        records = await svc.lookup_many(req.sandbox_ids, ctx.owner(request))
        return ok({"statuses": [status_result(r, None, keep) for r in records]})

    @api.get("/sandboxes/{sandbox_id}/history", **doc(result=list[StateTransitionRecord], codes=(404,)))
    async def history(sandbox_id: str, request: Request):
        record = await svc.lookup(sandbox_id, ctx.owner(request))
        await svc.held.written(sandbox_id)
        return ok(status_result(record, await svc.store.history(sandbox_id))["state_history"])

    return api


