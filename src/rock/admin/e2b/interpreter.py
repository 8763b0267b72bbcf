"""E2B's code-interpreter server (port 49999 of a sandbox: ``/execute``, ``/contexts``) onto the
agent's code contexts (rock/agent/e2b/interpreter.py). The SDK sends these to the same address with
``E2b-Sandbox-Port: 49999``; ``/execute`` answers a stream of JSON lines (stdout, stderr,
result, error, number_of_executions)."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rock.admin.context import Ctx
from rock.admin.e2b.common import data_record, json_object, route
from rock.admin.e2b.framing import json_response
from rock.errors import AgentError, AgentGone, E2BError, SandboxGone, SandboxNotFound, SandboxNotRunning

PORT = "49999"
MAX_BUFFERED = 64 << 20
STARTED = {"type": "started"}  # the agent took the cell (never sent to the client)


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    svc = ctx.sandboxes

    async def agent_of(request: Request):
        if request.headers.get("e2b-sandbox-port", PORT) != PORT:
            raise E2BError(502, f"port {request.headers['e2b-sandbox-port']} is not served here: ROCK's "
                                 "sandboxes answer envd (49983) and the code interpreter (49999)")
        record = data_record(ctx, request)
        try:
            return record, await svc.agent(record.sandbox_id, record.owner)
        except (SandboxNotFound, SandboxNotRunning, AgentGone):
            raise SandboxGone(record.sandbox_id) from None

    async def body(request: Request) -> dict:
        return await json_object(request, E2BError)

    async def call(request: Request, op: str, args: dict) -> dict:
        _, agent = await agent_of(request)
        try:
            return (await agent.call(op, args))[0]
        except AgentError as exc:
            raise E2BError(404 if exc.kind == "NotFound" else 400, exc.message) from None

    @route(api, "/execute")
    async def execute(request: Request):
        req = await body(request)
        if not isinstance(req.get("code"), str):
            raise E2BError(400, "code must be a string")
        env = req.get("env_vars") or {}
        if not isinstance(env, dict):
            raise E2BError(400, "env_vars must be an object")
        record, agent = await agent_of(request)
        queue: asyncio.Queue = asyncio.Queue()
        args = {"code": req["code"], "id": req.get("context_id"), "language": req.get("language"),
                "env": {str(k): str(v) for k, v in env.items()}, "timeout": None}
        held = [0]  # queued output not yet sent: past MAX_BUFFERED the cell is interrupted (bounded memory)

        def on_event(meta: dict, body: bytes) -> None:
            if meta.get("event") == "start":
                queue.put_nowait(STARTED)
                return
            size = len(meta["msg"].get("text") or "")
            if held[0] + size > MAX_BUFFERED:
                if not cell.done():
                    queue.put_nowait({"type": "error", "name": "OutputTooLarge", "traceback": "", "value":
                                      f"the cell wrote more than {MAX_BUFFERED >> 20} MiB the client had not read; "
                                      "it was interrupted"})
                    cell.cancel()
                return
            held[0] += size
            queue.put_nowait(meta["msg"])

        cell = asyncio.ensure_future(agent.call("kernel.exec", args, on_event=on_event))
        cell.add_done_callback(lambda _: queue.put_nowait(None))

        async def following() -> dict | None:
            # A quiet cell sends nothing, so a client that gave up (the SDK's timeout) would go
            # unnoticed until it prints: look for the disconnect while waiting.
            while True:
                try:
                    return await asyncio.wait_for(queue.get(), 0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return None

        # The answer's head goes out once the agent took the cell (its context exists), before
        # any output: a client times a quiet cell by its execution timeout, not its request one.
        first = await following()
        if first is None and not cell.done():  # the client left before the cell was taken
            cell.cancel()
            return Response(status_code=499)
        if first is None and not cell.cancelled() and cell.exception() is not None:  # refused before it ran: an HTTP error
            exc = cell.exception()
            if isinstance(exc, AgentError):
                raise E2BError(404 if exc.kind == "NotFound" else 400, exc.message)
            raise SandboxGone(record.sandbox_id)

        async def lines():
            try:
                msg = await following() if first is STARTED else first
                while msg is not None:
                    svc.touch(record)
                    held[0] -= len(msg.get("text") or "")
                    yield json.dumps(msg).encode() + b"\n"
                    msg = await following()
            finally:
                if not cell.done():  # the client went away: the agent interrupts the cell
                    cell.cancel()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @route(api, "/contexts")
    async def create_context(request: Request):
        req = await body(request)
        return json_response(await call(request, "kernel.create", {"language": req.get("language"), "cwd": req.get("cwd")}))

    @route(api, "/contexts", "GET")
    async def list_contexts(request: Request):
        return json_response((await call(request, "kernel.list", {}))["contexts"])

    @route(api, "/contexts/{context_id}", "DELETE")
    async def remove_context(request: Request, context_id: str):
        await call(request, "kernel.remove", {"id": context_id})
        return Response(status_code=204)

    @route(api, "/contexts/{context_id}/restart")
    async def restart_context(request: Request, context_id: str):
        await call(request, "kernel.restart", {"id": context_id})
        return Response(status_code=204)

    return api
