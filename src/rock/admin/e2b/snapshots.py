"""E2B's pause, resume, snapshots and fork onto the sandbox service's own methods
(``Sandboxes.pause/resume/snapshot/fork/snapshots/delete_snapshot``, rock.admin.sandboxes.snapshots): no
second code path, the same owner checks (another token's sandbox or snapshot is a 404).

The wire, as the e2b SDK 2.63 sends and reads it (``e2b/sandbox_sync/sandbox_api.py`` and the
generated ``e2b/api/client/api/...``):

- ``pause(mode=, strict=)``: ``POST /sandboxes/{id}/pause`` ``{"memory"?: bool,
  "requireHealthyGuest"?: bool}`` -> 204 (True); 409 means already paused (False); 404.
  ROCK's pause keeps the processes in memory on every backend (a freeze), which is what
  ``memory`` (the default, "full") asks; ``memory: false`` gets that too (more is kept, never less).
- ``connect()`` (resume): ``POST /v2/sandboxes/{id}/connect`` ``{"timeout"?, "memory"?}`` -> 200
  running, 201 resumed (control.py); old SDKs ``POST /sandboxes/{id}/resume`` -> 201, 409 running.
- ``create_snapshot(name, mode=)``: ``POST /sandboxes/{id}/snapshots`` ``{"name"?, "memory"?: bool}``
  -> 201 ``{"snapshotID", "names": [...]}``; 400 the SDK's SandboxException(status_code=400),
  404 SandboxNotFoundException. ``memory`` left out: the most the backend keeps (full on gVisor,
  filesystem elsewhere); ``true`` on a backend without full snapshots: 400 naming the ones with.
- ``Sandbox.create(snapshot_id)``: ``POST /v2/sandboxes`` ``{"templateID": <snapshotID>}`` (control.py).
- ``list_snapshots(sandbox_id?, name?, limit, next_token)``: ``GET /snapshots?sandboxID=&name=&limit=&nextToken=``
  -> 200 ``[{"snapshotID", "names"}]``, ``X-Next-Token`` while more follow.
- ``delete_snapshot(id)``: ``DELETE /templates/{id}`` (templates.py's route) -> 204 (True), 404 (False).
- ``fork(count=1..20, timeout)``: ``POST /sandboxes/{id}/fork`` ``{"count"?, "timeout"?}`` -> 201
  ``[{"sandbox": <Sandbox as create answers>} | {"error": {"code", "message"}}]``, one per child;
  the SDK checks the count itself, the server again (400). A 404 fails the whole call.
- ``lifecycle={"on_timeout": "pause", "auto_resume": b}``: NewSandboxV2 ``autoPause``,
  ``autoPauseMemory``, ``autoResume: {"enabled": b}`` (control.py); sandbox info answers
  ``state: "paused"`` and ``lifecycle: {"onTimeout", "autoResume"}``.
- A paused sandbox on the data plane: E2B's proxy answers 502 "... was not found" (the SDK's
  SandboxNotRunningException); here its message also says it is paused and how to resume it.
  Started with ``auto_resume``, the call resumes it instead (the service's rule).
"""

from __future__ import annotations

import re
import secrets

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from rock.actions.snapshots import MAX_FORK, SNAPSHOT_NAME_PATTERN, STORED_NAME_PATTERN
from rock.admin.context import Ctx
from rock.admin.e2b.common import (META_KEY, TOKEN_KEY, control_record, json_object,
                                   owner_of, paged, route)
from rock.admin.e2b.framing import json_response
from rock.admin.store import SandboxRecord
from rock.admin.e2b.errors import refusal
from rock.errors import E2BError, RockError
from rock.worker.worker import Worker

NAME = re.compile(SNAPSHOT_NAME_PATTERN)
STORED_NAME = re.compile(STORED_NAME_PATTERN)  # a snapshot id as the service stores it


def _memory(body: dict) -> bool | None:
    value = body.get("memory")
    if value is not None and not isinstance(value, bool):
        raise E2BError(400, "memory must be true (a full snapshot: memory and processes) or false (files only)")
    return value


def snapshot_mode(ctx: Ctx, memory: bool | None, record: SandboxRecord) -> str:
    """E2B's ``memory`` as ROCK's mode: left out, the most the sandbox's backend keeps (on a
    cluster, its node's)."""
    if memory is None:
        catalog = ctx.sandboxes.snapshot_catalog
        return "full" if catalog.takes_full(record.sandbox_id, record.node_id) else "filesystem"
    return "full" if memory else "filesystem"


def taken_from(snap, sandbox_id: str) -> bool:
    """Whether ``snap`` is of the sandbox ``sandbox_id`` (the runtime names a long id shorter)."""
    return snap.source in (sandbox_id, Worker._runtime_id(sandbox_id))


def snapshot_info(snap) -> dict:
    return {"snapshotID": snap.name, "names": [snap.name]}


def as_e2b_child(record: SandboxRecord, parent: SandboxRecord, timeout: int | None, keep_after_timeout: int) -> None:
    """A forked child is an E2B sandbox of its own: its own access token (never the parent's),
    the parent's template and metadata, the fork's timeout."""
    record.spec = {**record.spec, TOKEN_KEY: secrets.token_urlsafe(24), META_KEY: parent.spec.get(META_KEY) or {},
                   "auto_delete_seconds": keep_after_timeout}
    if timeout is not None:
        record.auto_clear_seconds = timeout


async def delete_snapshot(ctx: Ctx, template_id: str, owner: str | None) -> None:
    """``DELETE /templates/{id}`` of a snapshot (templates.py serves the route: a template's own
    id or name deletes the template)."""
    try:
        await ctx.sandboxes.delete_snapshot(template_id, owner)
    except RockError as exc:
        if exc.status_code == 404 or exc.status_code == 400:  # a name no snapshot could have: none
            raise E2BError(404, f"template or snapshot \"{template_id}\" doesn't exist or you don't have access "
                                "to it") from None
        raise refusal(exc) from None


class Routes:
    """The routes, and ``resumed`` (connect resumes a paused sandbox the same way).
    ``sandbox_body(record)``: E2B's Sandbox as create answers it; ``timeout_of(body, default)``:
    a checked ``timeout`` field (both control.py's)."""

    def __init__(self, ctx: Ctx, sandbox_body, timeout_of):
        self.ctx, self.sandbox_body, self.timeout_of = ctx, sandbox_body, timeout_of

    async def resumed(self, record: SandboxRecord, body: dict) -> Response:
        """Resume a paused sandbox (connect and resume both): 201 with the Sandbox, as E2B answers."""
        svc = self.ctx.sandboxes
        timeout = self.timeout_of(body, 0) if "timeout" in body else None
        try:
            await svc.resume(record.sandbox_id, record.owner)
        except RockError as exc:
            raise refusal(exc) from None
        if timeout is not None and timeout > (record.auto_clear_seconds or 0):  # only ever extends
            record.auto_clear_seconds = timeout
            svc.save(record)
        return json_response(self.sandbox_body(record), 201)

    def router(self) -> APIRouter:
        ctx, sandbox_body, timeout_of, resumed = self.ctx, self.sandbox_body, self.timeout_of, self.resumed
        api = APIRouter()
        svc = ctx.sandboxes

        async def owned(request: Request, sandbox_id: str) -> tuple[SandboxRecord, dict]:
            record = await control_record(ctx, sandbox_id, owner_of(ctx, request))
            return record, await json_object(request, E2BError)

        @route(api, "/sandboxes/{sandbox_id}/pause")
        async def pause(request: Request, sandbox_id: str):
            record, body = await owned(request, sandbox_id)
            _memory(body)  # every pause keeps the memory here; a malformed field is still refused
            if record.state == "paused":
                raise E2BError(409, f"sandbox {sandbox_id} is already paused")
            try:
                await svc.pause(record.sandbox_id, record.owner)
            except RockError as exc:
                raise refusal(exc) from None
            return Response(status_code=204)

        @route(api, "/sandboxes/{sandbox_id}/resume")
        async def resume(request: Request, sandbox_id: str):
            record, body = await owned(request, sandbox_id)
            if record.state != "paused":
                raise E2BError(409, f"sandbox {sandbox_id} is {record.state}, not paused: there is nothing to resume")
            return await resumed(record, body)

        @route(api, "/sandboxes/{sandbox_id}/snapshots")
        async def snapshot(request: Request, sandbox_id: str):
            record, body = await owned(request, sandbox_id)
            name = body.get("name")
            if name is not None and (not isinstance(name, str) or not NAME.match(name)):
                raise E2BError(400, "name must be 1-53 letters, digits, '_' or '-', starting with a letter or digit")
            try:
                snap = await svc.snapshot(record.sandbox_id, record.owner, name=name,
                                          mode=snapshot_mode(ctx, _memory(body), record))
            except RockError as exc:
                raise refusal(exc) from None
            return json_response(snapshot_info(snap), 201)

        @route(api, "/sandboxes/{sandbox_id}/fork")
        async def fork(request: Request, sandbox_id: str):
            record, body = await owned(request, sandbox_id)
            count = body.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FORK:
                raise E2BError(400, f"count must be a whole number from 1 to {MAX_FORK}, not {count!r}")
            timeout = timeout_of(body, 0) if body.get("timeout") is not None else None
            try:
                children, _ = await svc.fork(record.sandbox_id, record.owner, count, mode=snapshot_mode(ctx, None, record))
            except RockError as exc:
                raise refusal(exc) from None
            out = []
            for child in children:
                if child.state == "running":
                    as_e2b_child(child, record, timeout, ctx.settings.e2b.keep_after_timeout)
                    svc.save(child)
                    out.append({"sandbox": sandbox_body(child)})
                else:  # one child's failure is that child's entry, as E2B answers it
                    out.append({"error": {"code": 503, "message": child.failure_reason or f"the fork {child.state}"}})
            return json_response(out, 201)

        @api.get("/snapshots", tags=["e2b"], responses={200: {"description": "the caller's snapshots"},
                                                        400: {"description": "a bad limit or nextToken"},
                                                        401: {"description": "X-API-KEY is missing or unknown"}})
        async def snapshots(request: Request):
            owner = owner_of(ctx, request)
            q = request.query_params
            items = [s for s in sorted(await svc.snapshots(owner), key=lambda s: s.created_at, reverse=True)
                     if (not q.get("sandboxID") or taken_from(s, q["sandboxID"]))
                     and (not q.get("name") or q["name"] in (s.name, s.name.rsplit(".", 1)[0]))]
            page, headers = paged(request, items, 1000)
            return json_response([snapshot_info(s) for s in page], 200, headers)

        return api
