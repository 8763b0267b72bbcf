"""Pause, resume, snapshots and fork in ROCK's API (ours: rl-rock has none), named as its
lifecycle routes are, onto ``Sandboxes``' operations (``rock.admin.sandboxes.snapshots``)::

    POST   /sandboxes/{sandbox_id}/pause       also POST /pause   {"sandbox_id"}
    POST   /sandboxes/{sandbox_id}/resume      also POST /resume  {"sandbox_id"}
    POST   /sandboxes/{sandbox_id}/snapshot    {"name"?, "mode"?}          -> SnapshotInfo
    POST   /sandboxes/{sandbox_id}/fork        {"count", "mode"?, ...}     -> ForkResult
    POST   /sandboxes/{sandbox_id}/restore     {"snapshot"}                -> the sandbox, rolled back in place
    GET    /snapshots                                                      -> [SnapshotInfo]
    GET    /snapshots/{name}                                               -> SnapshotInfo
    DELETE /snapshots/{name}

A sandbox starts from a snapshot through ``/start`` (its ``snapshot`` field). Plain FastAPI
routes, as the other lifecycle routes: none is called per step.
"""

from __future__ import annotations

from fastapi import APIRouter, Path
from starlette.requests import Request

from rock.actions.response import RockResponse, SandboxStartResponse
from rock.actions.snapshots import (STORED_NAME_PATTERN, ForkRequest, ForkResult, RestoreRequest, SandboxIdBody,
                                    SnapshotInfo, SnapshotRequest)
from rock.admin.context import Ctx, ok
from rock.admin.openapi import errors, long_running
from rock.runtime.snapshots import Snapshot

SandboxPath = Path(min_length=1, max_length=128, description="the sandbox's id")
NamePath = Path(pattern=STORED_NAME_PATTERN, description="the snapshot's name, as its snapshot reply gave it")
WHY = {404: "no such sandbox or snapshot (another namespace's look the same)",
       409: "the sandbox's state does not allow this (e.g. not running), or the snapshot's name is taken"}


def _errors(*codes: int) -> dict:
    out = errors(*codes)
    for code, text in WHY.items():
        if code in out:
            out[code] = {**out[code], "description": text}
    return out


def snapshot_info(snap: Snapshot) -> dict:
    """What the owner sees of a snapshot (never its source's environment, labels or limits)."""
    return SnapshotInfo(name=snap.name, mode=snap.mode, backend=snap.backend, source=snap.source,
                        image=snap.spec.image, created_at=snap.created_at, size_bytes=snap.size_bytes,
                        took_ms=snap.took_ms).model_dump()


def router(ctx: Ctx) -> APIRouter:
    from rock.admin.rock_api.sandbox import start_result

    api = APIRouter(tags=["snapshots"])
    svc = ctx.sandboxes
    state_doc = {"response_model": RockResponse[SandboxStartResponse], "responses": _errors(404, 409, 422)}

    summaries = {"pause": "Pause a running sandbox: its processes stay in memory, use no CPU, and its calls are "
                          "refused (409) until it is resumed; idempotent",
                 "resume": "Resume a paused sandbox where it stopped; its idle time starts afresh (paused time "
                           "does not count); idempotent"}
    def mount(op: str, summary: str) -> None:
        act = getattr(svc, op)

        async def by_path(request: Request, sandbox_id: str = SandboxPath):
            return ok(start_result(await act(sandbox_id, ctx.owner(request))))

        async def by_body(body: SandboxIdBody, request: Request):
            return ok(start_result(await act(body.sandbox_id, ctx.owner(request))))

        api.post(f"/sandboxes/{{sandbox_id}}/{op}", summary=summary, name=op, **state_doc)(by_path)
        api.post(f"/{op}", summary=summary + " (the id in the body)", name=f"{op}_body", **state_doc)(by_body)

    for op, summary in summaries.items():
        mount(op, summary)

    @api.post("/sandboxes/{sandbox_id}/snapshot", response_model=RockResponse[SnapshotInfo],
              responses=_errors(400, 404, 409, 422, 429),
              openapi_extra=long_running(600, "a filesystem snapshot copies the sandbox's writable layer (an engine "
                                              "commit on docker); a full one checkpoints its memory"),
              summary="Save the sandbox's state as a named snapshot you own: filesystem (every backend) or "
                      "full (memory and processes: gvisor; 400 elsewhere, naming the backends that can)")
    async def snapshot(request: Request, body: SnapshotRequest | None = None, sandbox_id: str = SandboxPath):
        body = body or SnapshotRequest()
        return ok(snapshot_info(await svc.snapshot(sandbox_id, ctx.owner(request), body.name, body.mode)))

    @api.post("/sandboxes/{sandbox_id}/fork", response_model=RockResponse[ForkResult],
              responses=_errors(400, 404, 409, 422, 429, 503),
              openapi_extra=long_running(900, "a snapshot of the sandbox, then count sandboxes started from it"),
              summary="Start count (1 to 20) sandboxes from a fresh snapshot of this one; each child is its "
                      "own sandbox (full, on gvisor: each goes on with the parent's processes)")
    async def fork(body: ForkRequest, request: Request, sandbox_id: str = SandboxPath):
        children, snap = await svc.fork(sandbox_id, ctx.owner(request), body.count, body.mode,
                                        keep_snapshot=body.keep_snapshot, wait=body.wait)
        return ok({"sandboxes": [start_result(c) for c in children],
                   "snapshot": snapshot_info(snap) if snap is not None else None})

    @api.post("/sandboxes/{sandbox_id}/restore", response_model=RockResponse[SandboxStartResponse],
              responses=_errors(400, 404, 409, 422, 503),  # 503: the new state did not start (the old one runs on)
              openapi_extra=long_running(600, "the sandbox's new state starts from the snapshot before its old one "
                                              "ends (a start from a snapshot)"),
              summary="Roll the sandbox back to one of your snapshots in place: the same id, tokens and ports, the "
                      "snapshot's files (full: its processes too), this sandbox's limits; commands still running "
                      "end with an error; a paused sandbox runs afterwards")
    async def restore(body: RestoreRequest, request: Request, sandbox_id: str = SandboxPath):
        return ok(start_result(await svc.restore(sandbox_id, ctx.owner(request), body.snapshot)))

    @api.get("/snapshots", response_model=RockResponse[list[SnapshotInfo]], responses=_errors(),
             summary="Your snapshots, by name")
    async def snapshots(request: Request):
        return ok([snapshot_info(s) for s in await svc.snapshots(ctx.owner(request))])

    @api.get("/snapshots/{name}", response_model=RockResponse[SnapshotInfo], responses=_errors(404, 422),
             summary="One of your snapshots")
    async def get_snapshot(request: Request, name: str = NamePath):
        return ok(snapshot_info(await svc.get_snapshot(name, ctx.owner(request))))

    @api.delete("/snapshots/{name}", response_model=RockResponse[str], responses=_errors(404, 409, 422),
                summary="Delete one of your snapshots; sandboxes started from it run on")
    async def delete_snapshot(request: Request, name: str = NamePath):
        await svc.delete_snapshot(name, ctx.owner(request))
        return ok(f"{name} deleted")

    return api
