"""The UI's pause, resume, snapshot and fork buttons on a sandbox's page, and the snapshots list
(start a sandbox from one, delete one). Every action is the sandbox service's own method
(``Sandboxes.pause/resume/snapshot/fork/snapshots/delete_snapshot``, a start with ``snapshot``),
with the access rules of the other UI actions: the viewer's namespace, a same-origin form post."""

from __future__ import annotations

import re

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import RedirectResponse

from rock.actions.sandbox import SandboxStartRequest
from rock.actions.snapshots import MAX_FORK, SNAPSHOT_NAME_PATTERN
from rock.admin.context import Ctx
from rock.admin.sandboxes.start_checks import check_start_request
from rock.admin.store import SandboxRecord
from rock.admin.ui import access
from rock.admin.ui.pages import HTML, render
from rock.admin.ui.views import clock, size
from rock.errors import RockError
from rock.worker.worker import Worker

NAME = re.compile(SNAPSHOT_NAME_PATTERN)
MODES = ("filesystem", "full")
BACK = {303: {"description": "back to the page the action was on"}}


def page_error(exc: RockError) -> access.PageError:
    """A service refusal as the page the browser shows (its status and message, never a traceback)."""
    return access.PageError(exc.status_code if exc.status_code < 500 else 503, exc.message or type(exc).__name__)


def name_of(raw: str) -> str | None:
    name = raw.strip() or None
    if name is not None and not NAME.match(name):
        raise access.PageError(400, "a snapshot name is 1-53 letters, digits, '_' or '-', starting with a letter or "
                                    f"digit, not {name!r}")
    return name


def mode_of(mode: str) -> str:
    if mode not in MODES:
        raise access.PageError(400, f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def count_of(raw: str) -> int:
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_FORK:
        raise access.PageError(400, f"count must be a whole number from 1 to {MAX_FORK}, not {raw!r}")
    return int(raw)


def snapshot_row(s, sources: dict[str, str]) -> dict:
    """``sources``: runtime id -> sandbox id of the viewer's sandboxes (the runtime names a long id
    shorter; a source that is gone is shown by that name, without a link)."""
    source = sources.get(s.source)
    return {"name": s.name, "mode": s.mode, "backend": s.backend, "source": source or s.source, "linked": bool(source),
            "created": clock(s.created_at),
            "size": size(s.size_bytes), "took_ms": f"{s.took_ms:.0f}" if s.took_ms is not None else "-"}


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    svc = ctx.sandboxes

    async def act(request: Request, sandbox_id: str, call) -> RedirectResponse:
        access.same_origin(request)
        r = await access.record(ctx, request, sandbox_id)
        try:
            where = await call(r)  # a path to go to, or anything else: back to the sandbox
        except RockError as exc:
            raise page_error(exc) from None
        return RedirectResponse(where if isinstance(where, str) else f"/ui/sandboxes/{sandbox_id}", status_code=303)

    @api.post("/ui/sandboxes/{sandbox_id}/pause", **HTML, responses=BACK)
    async def pause(request: Request, sandbox_id: str):
        """Freeze the sandbox's processes where they stand (no CPU until resumed)."""
        return await act(request, sandbox_id, lambda r: svc.pause(r.sandbox_id, r.owner))

    @api.post("/ui/sandboxes/{sandbox_id}/resume", **HTML, responses=BACK)
    async def resume(request: Request, sandbox_id: str):
        return await act(request, sandbox_id, lambda r: svc.resume(r.sandbox_id, r.owner))

    @api.post("/ui/sandboxes/{sandbox_id}/snapshot", **HTML, responses=BACK)
    async def snapshot(request: Request, sandbox_id: str, name: str = Form("", max_length=64),
                       mode: str = Form("filesystem", description="filesystem or full (gvisor)")):
        """Take a snapshot (a name of the viewer's choosing, or a fresh one); to the snapshots list."""
        async def call(r: SandboxRecord) -> str:
            await svc.snapshot(r.sandbox_id, r.owner, name=name_of(name), mode=mode_of(mode))
            return "/ui/snapshots"
        return await act(request, sandbox_id, call)

    @api.post("/ui/sandboxes/{sandbox_id}/fork", **HTML, responses=BACK)
    async def fork(request: Request, sandbox_id: str, count: str = Form("1", max_length=8, description="1 to 20"),
                   mode: str = Form("filesystem", description="filesystem or full (gvisor)")):
        """``count`` new sandboxes from a fresh snapshot of this one; to the table, where they show up."""
        async def call(r: SandboxRecord) -> str:
            await svc.fork(r.sandbox_id, r.owner, count_of(count), mode=mode_of(mode))
            return "/ui/sandboxes"
        return await act(request, sandbox_id, call)

    @api.get("/ui/snapshots", **HTML)
    async def snapshots_page(request: Request):
        """The viewer's snapshots: start a sandbox from one, delete one."""
        owner = access.principal(ctx, request)
        shown = sorted(await svc.snapshots(owner), key=lambda s: s.created_at, reverse=True)
        sources = {Worker._runtime_id(r.sandbox_id): r.sandbox_id for r in svc.held.live(owner)}
        return render(request, "snapshots.html", nav="snapshots",
                      snapshots=[snapshot_row(s, sources) for s in shown])

    async def on_snapshot(request: Request, name: str, call) -> RedirectResponse:
        access.same_origin(request)
        owner = access.principal(ctx, request)
        try:
            where = await call(owner)
        except RockError as exc:
            raise page_error(exc) from None
        return RedirectResponse(where, status_code=303)

    @api.post("/ui/snapshots/{name}/start", **HTML, responses=BACK)
    async def start_from(request: Request, name: str):
        """A new sandbox from the snapshot (its image and limits); to its page."""
        async def call(owner) -> str:
            req = SandboxStartRequest(snapshot=name)
            check_start_request(req, ctx.worker, ctx.settings)  # as every start door does
            record = await svc.start(req, owner, {}, wait=True)
            return f"/ui/sandboxes/{record.sandbox_id}"
        return await on_snapshot(request, name, call)

    @api.post("/ui/snapshots/{name}/delete", **HTML, responses=BACK)
    async def delete(request: Request, name: str):
        async def call(owner) -> str:
            await svc.delete_snapshot(name, owner)
            return "/ui/snapshots"
        return await on_snapshot(request, name, call)

    return api
