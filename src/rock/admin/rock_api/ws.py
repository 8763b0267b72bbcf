"""Streamed command output over a WebSocket (ours): ``/stream?sandbox_id=..&session=..``.

client -> server: {"type": "run", "command", "timeout"?, "idle_timeout"?, "max_output"?}
                  {"type": "input", "data"}   {"type": "interrupt"}
server -> client: {"type": "output", "data"} as the command prints,
                  {"type": "result", ...observation} when it ends,
                  {"type": "error", "status_code", "error_type", "message"} for a failed request.
One command runs at a time per connection; the interactive ``rock sandbox shell`` uses the same
socket. A client that disconnects mid-command gets its command interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from rock.actions.sandbox import SandboxId, SessionName
from rock.admin.context import Ctx
from rock.admin.errors import socket_error
from rock.jsonutil import loads
from rock.admin.rock_api.data import observation
from rock.errors import BadRequest, SessionBusy, SessionExists


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sandbox_id: SandboxId
    session: SessionName = "default"
    create: bool = False


class RunMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    command: str
    timeout: float | None = Field(default=None, gt=0)
    idle_timeout: float | None = Field(default=None, gt=0)
    max_output: int | None = Field(default=None, gt=0)


class _Backlog:
    """Output waiting to be sent to a client, bounded: a client that reads slower than its command
    prints loses the excess (and is told how much), instead of the admin keeping it all in memory."""

    def __init__(self, out: asyncio.Queue):
        self.out, self.pending, self.dropped, self.limit = out, 0, 0, 0

    def add(self, text: str) -> None:
        if self.pending + len(text) > self.limit:
            self.dropped += len(text)
            return
        self.flush_notice()
        self.pending += len(text)
        self.out.put_nowait({"type": "output", "data": text})

    def flush_notice(self) -> None:
        if self.dropped:
            self.out.put_nowait({"type": "output", "data": f"\n[rock: {self.dropped} characters of output dropped: the "
                                                            "client read slower than the command printed]\n"})
            self.dropped = 0

    def sent(self, msg: dict) -> None:
        if msg.get("type") == "output":
            self.pending = max(0, self.pending - len(msg["data"]))


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()

    @api.websocket("/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        try:
            q = StreamQuery.model_validate(dict(ws.query_params))
            agent = await ctx.agent(ws, q.sandbox_id)
            if q.create:
                with contextlib.suppress(SessionExists):
                    await agent.create_session(q.session)
        except Exception as exc:  # noqa: BLE001 - reported to the client, then closed
            await ws.send_json(socket_error(exc))
            await ws.close(code=1008)
            return

        out: asyncio.Queue = asyncio.Queue()
        backlog = _Backlog(out)
        running: asyncio.Task | None = None

        async def run(msg: RunMessage) -> None:
            try:
                started, t0 = time.time(), time.perf_counter()
                backlog.limit = msg.max_output or ctx.settings.max_output_bytes
                r = await agent.run(q.session, msg.command, timeout=msg.timeout, idle_timeout=msg.idle_timeout,
                                    max_output=backlog.limit, on_output=backlog.add)
                backlog.flush_notice()
                ctx.sandboxes.commands.add(q.sandbox_id, "stream", q.session, msg.command, r.exit_code, r.status, started,
                                           time.perf_counter() - t0)
                out.put_nowait({"type": "result", **observation(r, "silent", msg.command)})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                out.put_nowait(socket_error(exc))

        async def pump() -> None:
            while True:
                msg = await out.get()
                await ws.send_json(msg)
                backlog.sent(msg)

        sender = asyncio.create_task(pump())
        try:
            while True:
                text = await ws.receive_text()
                try:
                    try:
                        msg = loads(text)
                    except ValueError:
                        raise BadRequest("messages must be JSON objects") from None
                    kind = msg.get("type") if isinstance(msg, dict) else None
                    if kind == "run":
                        if running is not None and not running.done():
                            raise SessionBusy("a command is already running on this stream; interrupt it first")
                        req = RunMessage.model_validate(msg)
                        agent = await ctx.agent(ws, q.sandbox_id)  # counts as a use; fails if stopped
                        running = asyncio.create_task(run(req))
                    elif kind == "input":
                        await agent.send_input(q.session, str(msg.get("data", "")))
                    elif kind == "interrupt":
                        await agent.interrupt(q.session)
                    else:
                        raise BadRequest(f"unknown message type {kind!r}; expected run, input or interrupt")
                except Exception as exc:  # noqa: BLE001 - one bad message does not end the stream
                    out.put_nowait(socket_error(exc))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if running is not None and not running.done():
                with contextlib.suppress(Exception):
                    await agent.interrupt(q.session)
                running.cancel()
            sender.cancel()
            await asyncio.gather(sender, *(t for t in (running,) if t), return_exceptions=True)

    return api
