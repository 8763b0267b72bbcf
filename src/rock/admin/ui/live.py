"""Server-sent events that keep the open pages current without a reload.

``change`` tells a page to fetch its live fragments again: sent (at most every DEBOUNCE_S) when
one of the viewer's sandboxes changes state, when a sandbox page's command list grows, and every
TICK_S on the overview and table (ages, idle time and usage move on their own). ``stats`` carries
a sandbox page's cpu/memory/pids every STATS_S. Nothing is polled for changes: the sandbox
service's events wake the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import StreamingResponse

from rock.admin.context import Ctx
from rock.admin.ui import access
from rock.admin.ui.views import StatsSampler

DEBOUNCE_S = 0.2
TICK_S = 10.0
STATS_S = 2.0


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    sampler = StatsSampler(ctx)

    @api.get("/ui/events", tags=["ui"], response_class=StreamingResponse, responses={
        200: {"content": {"text/event-stream": {}}, "description": "events `change` and (with sandbox_id) `stats`"},
        401: {"description": "tokens are configured and the request carries none that is known"}})
    async def events(request: Request, sandbox_id: str | None = None):
        """Live updates for the page that is open: the overview and table, or one sandbox."""
        owner = access.principal(ctx, request)
        if sandbox_id is not None:
            await ctx.sandboxes.lookup(sandbox_id, owner)  # 404 for another namespace's sandbox
        changed = asyncio.Event()

        def listener(kind: str, record, info: dict) -> None:
            if record.owner == owner and (sandbox_id is None or record.sandbox_id == sandbox_id):
                changed.set()

        unsubscribe = ctx.sandboxes.events.subscribe(listener)

        async def stream():
            try:
                yield "retry: 2000\n\n"
                period = STATS_S if sandbox_id else TICK_S
                seen_commands = _commands_mark(ctx, sandbox_id)
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(changed.wait(), period)
                    commands = _commands_mark(ctx, sandbox_id)
                    if changed.is_set() or sandbox_id is None or commands != seen_commands:
                        await asyncio.sleep(DEBOUNCE_S)  # a burst of changes makes one refresh
                        changed.clear()
                        seen_commands = _commands_mark(ctx, sandbox_id)
                        yield f"event: change\ndata: {ctx.sandboxes.events.version}\n\n"
                    stats = None
                    if sandbox_id is not None:
                        record = ctx.sandboxes.records.get(sandbox_id)
                        if record is not None and record.state == "running":
                            stats = await sampler.one(sandbox_id)
                            if stats is not None:
                                yield f"event: stats\ndata: {json.dumps(stats)}\n\n"
                        if stats is None:
                            # a stopped sandbox's page: a comment each period, so a client (or a
                            # proxy) waiting on the stream hears it is alive and can end its read
                            yield ": idle\n\n"
            finally:
                unsubscribe()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    return api


def _commands_mark(ctx: Ctx, sandbox_id: str | None):
    if sandbox_id is None:
        return None
    recent = ctx.sandboxes.commands.recent(sandbox_id)
    return (len(recent), recent[0]["started"]) if recent else (0, 0)
