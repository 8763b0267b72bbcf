"""Our additions to the sandbox API: session control, binary files and tar, background
processes, statistics. Binary payloads travel as raw HTTP bodies, never base64 or JSON."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rock.actions.sandbox import (
    InterruptRequest,
    ProcKillRequest,
    ProcStartRequest,
    SandboxId,
    SendInputRequest,
    WaitSessionRequest,
)
from rock.actions.response import BashObservation
from rock.admin.context import Ctx, check_path, ok, parse, query
from rock.admin.openapi import SANDBOX, doc, tar_body
from rock.admin.rock_api.data import observation, run_response
from rock.admin.uploads import write_whole

WRITE_CHUNK = 4 << 20


class _Q(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sandbox_id: SandboxId


class PathQuery(_Q):
    path: str = Field(min_length=1, pattern=r"^[^\x00]+$")


class ReadQuery(PathQuery):
    offset: int = Field(default=0, ge=0)
    length: int | None = Field(default=None, ge=0)


class WriteQuery(PathQuery):
    mode: str | None = Field(default=None, pattern=r"^[0-7]{3,4}$")
    append: bool = False


class ProcQuery(_Q):
    proc_id: str = Field(min_length=1, max_length=128)


class ProcOutputQuery(ProcQuery):
    stream: str = Field(default="stdout", pattern=r"^(stdout|stderr)$")
    offset: int = Field(default=0, ge=0)


def _bytes(media: str, what: str, headers: dict | None = None) -> dict:
    return {"response_class": Response, "responses": {200: {
        "description": what, "content": {media: {"schema": {"type": "string", "format": "binary"}}},
        **({"headers": headers} if headers else {})}}}


_PATHS = (400, *SANDBOX)  # 400: a path with '..' or NUL; 404 also: no such file


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()

    # -- sessions --------------------------------------------------------------------------

    @api.post("/interrupt_session", **doc(InterruptRequest, result=BashObservation, codes=SANDBOX))
    async def interrupt_session(request: Request):
        req = await parse(request, InterruptRequest)
        r = await (await ctx.agent(request, req.sandbox_id)).interrupt(req.session, grace=req.grace)
        return ok(observation(r, "silent", "", raw=True))

    @api.post("/send_input", **doc(SendInputRequest, result=dict, codes=SANDBOX))
    async def send_input(request: Request):
        req = await parse(request, SendInputRequest)
        await (await ctx.agent(request, req.sandbox_id)).send_input(req.session, req.data)
        return ok({})

    @api.post("/wait_session", **doc(WaitSessionRequest, result=BashObservation, codes=SANDBOX))
    async def wait_session(request: Request):
        req = await parse(request, WaitSessionRequest)
        agent = await ctx.agent(request, req.sandbox_id)
        r = await agent.wait(req.session, timeout=req.timeout, idle_timeout=req.idle_timeout)
        return run_response(observation(r, "silent", "", raw=True), "silent")

    @api.get("/sessions", **doc(query=_Q, result=dict, codes=SANDBOX))
    async def sessions(request: Request):
        q = query(request, _Q)
        return ok({"sessions": await (await ctx.agent(request, q.sandbox_id)).list_sessions()})

    # -- files -----------------------------------------------------------------------------

    @api.get("/files/read", **doc(query=ReadQuery, codes=_PATHS, **_bytes("application/octet-stream", "the file's bytes")))
    async def file_read(request: Request):
        q = query(request, ReadQuery)
        agent = await ctx.agent(request, q.sandbox_id)
        data = await agent.read_file(check_path(q.path), offset=q.offset, length=q.length)
        return Response(data, media_type="application/octet-stream")

    @api.put("/files/write", **doc(query=WriteQuery, raw_body="application/octet-stream", body_required=False,  # none: an empty file
                                       result=dict, codes=_PATHS))
    async def file_write(request: Request):
        q = query(request, WriteQuery)
        agent = await ctx.agent(request, q.sandbox_id)
        path, mode = check_path(q.path), int(q.mode, 8) if q.mode else None
        # Streamed in bounded chunks: a large upload never sits in memory whole.
        size = await write_whole(agent, path, request.stream(), WRITE_CHUNK, mode, append=q.append)
        return ok({"path": path, "size": size})

    @api.get("/files/download", **doc(query=PathQuery, codes=_PATHS, **_bytes("application/x-tar", "a tar of the file or directory")))
    async def download(request: Request):
        """A file or a directory as a tar stream (binary-safe, any size)."""
        q = query(request, PathQuery)
        agent = await ctx.agent(request, q.sandbox_id)
        await agent.stat(check_path(q.path))  # a missing path is a 404 before the stream starts
        name = q.path.rstrip("/").rsplit("/", 1)[-1] or "root"
        return StreamingResponse(agent.tar_get(q.path), media_type="application/x-tar",
                                 headers={"content-disposition": f'attachment; filename="{name}.tar"'})

    @api.put("/files/upload_tar", **doc(query=PathQuery, result=dict, codes=_PATHS,
                                        openapi_extra={"requestBody": tar_body("a tar unpacked at path")}))
    async def upload_tar(request: Request):
        q = query(request, PathQuery)
        agent = await ctx.agent(request, q.sandbox_id)
        return ok(await agent.tar_put(check_path(q.path), request.stream()))

    @api.get("/files/stat", **doc(query=PathQuery, result=dict, codes=_PATHS))
    async def stat(request: Request):
        q = query(request, PathQuery)
        return ok(await (await ctx.agent(request, q.sandbox_id)).stat(check_path(q.path)))

    @api.get("/files/list", **doc(query=PathQuery, result=dict, codes=_PATHS))
    async def list_dir(request: Request):
        q = query(request, PathQuery)
        return ok({"entries": await (await ctx.agent(request, q.sandbox_id)).list_dir(check_path(q.path))})

    # -- background processes --------------------------------------------------------------

    @api.post("/procs/start", **doc(ProcStartRequest, result=dict, codes=_PATHS))
    async def proc_start(request: Request):
        req = await parse(request, ProcStartRequest)
        agent = await ctx.agent(request, req.sandbox_id)
        if req.cwd is not None:
            check_path(req.cwd, "cwd")
        return ok(await agent.proc_start(req.command, shell=req.shell, env=req.env, cwd=req.cwd, name=req.name))

    @api.get("/procs/status", **doc(query=ProcQuery, result=dict, codes=SANDBOX))
    async def proc_status(request: Request):
        q = query(request, ProcQuery)
        return ok(await (await ctx.agent(request, q.sandbox_id)).proc_status(q.proc_id))

    @api.get("/procs/output", **doc(query=ProcOutputQuery, codes=SANDBOX, **_bytes(
        "application/octet-stream", "the stream's bytes from offset",
        {"x-next-offset": {"schema": {"type": "integer"}}, "x-running": {"schema": {"type": "string", "enum": ["0", "1"]}}})))
    async def proc_output(request: Request):
        q = query(request, ProcOutputQuery)
        agent = await ctx.agent(request, q.sandbox_id)
        data, next_offset, running = await agent.proc_output(q.proc_id, q.stream, q.offset)
        return Response(data, media_type="application/octet-stream",
                        headers={"x-next-offset": str(next_offset), "x-running": "1" if running else "0"})

    @api.post("/procs/kill", **doc(ProcKillRequest, result=dict, codes=SANDBOX))
    async def proc_kill(request: Request):
        req = await parse(request, ProcKillRequest)
        await (await ctx.agent(request, req.sandbox_id)).proc_kill(req.proc_id, req.signal)
        return ok({})

    @api.get("/procs", **doc(query=_Q, result=dict, codes=SANDBOX))
    async def procs(request: Request):
        q = query(request, _Q)
        return ok({"procs": await (await ctx.agent(request, q.sandbox_id)).proc_list()})

    # -- statistics ------------------------------------------------------------------------

    @api.get("/stats", **doc(query=_Q, result=dict, codes=SANDBOX))
    async def stats(request: Request):
        q = query(request, _Q)
        await ctx.agent(request, q.sandbox_id)
        return ok((await ctx.worker.stats(q.sandbox_id)).model_dump())

    return api

