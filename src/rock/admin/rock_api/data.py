"""Data-plane routes in ROCK's protocol: execute, sessions, run_in_session, files, upload.

This is the hot path: bodies are validated straight from bytes, the sandbox is looked up in
memory, the worker's agent connection is called in-process, and the envelope is encoded
directly. Nothing here touches the store.
"""

from __future__ import annotations

import contextlib
import time

from fastapi import APIRouter
from pydantic import TypeAdapter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from rock.actions.sandbox import (
    ID_PATTERN,
    SandboxBashAction,
    SandboxCloseSessionRequest,
    SandboxCommand,
    SandboxCreateSessionRequest,
    SandboxId,
    SandboxReadFileRequest,
    SandboxWriteFileRequest,
)
from rock.actions.response import (BashObservation, CloseBashSessionResponse, CommandResponse,
                                   CreateBashSessionResponse, ReadFileResponse, UploadResponse, WriteFileResponse,
                                   session_output)
from rock.admin.context import Ctx, check_path, ok, ok_body, parse
from rock.admin.doors import door
from rock.admin.openapi import SANDBOX, doc
from rock.jsonutil import dumps
from rock.admin.uploads import write_whole
from rock.errors import BadRequest, SessionExists, SessionNotFound

UPLOAD_CHUNK = 4 << 20
_sandbox_id = TypeAdapter(SandboxId)


def observation(r, check: str, command: str, error_msg: str = "", raw: bool = False) -> dict:
    """Agent RunResult -> ROCK Observation; ``failure_reason`` says why a command did not complete.

    The output is what ROCK's runtime returns (``session_output``: escapes removed, stripped at both
    ends), except where the command goes on and this is a piece of its output: an ``idle`` result,
    and ``raw`` ones (our wait_session and interrupt_session), whose pieces must join unchanged."""
    failure = ""
    if r.status == "timeout":
        failure = f"command timed out and was interrupted (the session is still usable): {command!r}"
    elif r.status == "ended":
        failure = f"the shell exited with code {r.exit_code}; create the session again to continue"
    elif r.status == "interrupted":
        failure = "the command was interrupted"
    elif r.status == "idle":
        failure = "no new output within idle_timeout; the command is still running (wait or interrupt the session)"
    elif check == "raise" and r.exit_code not in (0, None):
        failure = f"command {command!r} failed with exit code {r.exit_code}"
    if failure and error_msg:
        failure = f"{error_msg}: {failure}"
    output = r.output if raw or r.status == "idle" else session_output(r.output)
    return {"session_type": "bash", "output": output, "exit_code": None if check == "ignore" else r.exit_code,
            "failure_reason": failure, "expect_string": "", "status": r.status, "truncated": r.truncated}


def run_body(obs: dict, check: str) -> bytes:
    """A command that failed under check="raise" is not an HTTP error (the request was fine):
    like ROCK, answer 200 with status Failed, the observation and code 6000 (command error).
    rl-rock relies on this: its nohup wait treats a failing ``kill -0`` as "process finished"."""
    if check == "raise" and obs["failure_reason"] and obs["status"] != "idle":
        return dumps({"status": "Failed", "message": "run in session failed", "error": obs["failure_reason"],
                      "result": {**obs, "code": 6000}})
    return dumps({"status": "Success", "message": None, "error": None, "result": obs})


def run_response(obs: dict, check: str) -> Response:
    return Response(run_body(obs, check), media_type="application/json")


async def run_action(ctx: Ctx, a: SandboxBashAction, owner: str | None) -> tuple[bytes, int]:
    """run_in_session itself: (the envelope, encoded; its status)."""
    agent = await ctx.sandboxes.agent(a.sandbox_id, owner)
    max_output = a.max_output or ctx.settings.max_output_bytes
    started, t0 = time.time(), time.perf_counter()
    try:
        r = await agent.run(a.session, a.command, timeout=a.timeout, idle_timeout=a.idle_timeout, max_output=max_output)
    except SessionNotFound:
        if a.session != "default":
            raise
        # ROCK code often runs in "default" without creating it; we create it on first use.
        with contextlib.suppress(SessionExists):
            await agent.create_session("default")
        r = await agent.run(a.session, a.command, timeout=a.timeout, idle_timeout=a.idle_timeout, max_output=max_output)
    ctx.sandboxes.commands.add(a.sandbox_id, "run_in_session", a.session, a.command, r.exit_code, r.status, started,
                               time.perf_counter() - t0)
    return run_body(observation(r, a.check, a.command, a.error_msg), a.check), 200


async def session_action(ctx: Ctx, req: SandboxCreateSessionRequest, owner: str | None) -> tuple[bytes, int]:
    """create_session itself: (the envelope, encoded; its status)."""
    agent = await ctx.sandboxes.agent(req.sandbox_id, owner)
    for path in req.startup_source:
        check_path(path, "startup_source")
    await agent.create_session(req.session, env=req.env, cwd=req.cwd, startup_source=req.startup_source or None,
                               env_enable=req.env_enable)
    return SESSION_CREATED, 200


SESSION_CREATED = dumps({"status": "Success", "message": None, "error": None,
                         "result": {"session_type": "bash", "output": ""}})


async def _read_chunks(file: UploadFile):
    while chunk := await file.read(UPLOAD_CHUNK):
        yield chunk


UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "target_path", "sandbox_id"],
    "properties": {"file": {"type": "string", "format": "binary"}, "target_path": {"type": "string", "minLength": 1},
                   "sandbox_id": {"type": "string", "pattern": ID_PATTERN}}}}}}


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()

    # Fast routes (rock.admin.doors): answered at the app's door, ahead of FastAPI's layers.
    # 200 with status "Failed" and result.code 6000: the command failed under check="raise".
    @door(api, "POST", "/run_in_session", SandboxBashAction, require_body=True,
          **doc(SandboxBashAction, result=BashObservation, codes=(400, *SANDBOX, 504)))
    async def run_in_session(ctx: Ctx, action: SandboxBashAction, principal, call):
        return await run_action(ctx, action, principal)

    # every sandbox's first command waits on it
    @door(api, "POST", "/create_session", SandboxCreateSessionRequest, require_body=True,
          **doc(SandboxCreateSessionRequest, result=CreateBashSessionResponse, codes=(400, *SANDBOX)))
    async def create_session(ctx: Ctx, req: SandboxCreateSessionRequest, principal, call):
        return await session_action(ctx, req, principal)

    # a session's last call (the SDK's arun without a session closes the one it made)
    @door(api, "POST", "/close_session", SandboxCloseSessionRequest, require_body=True,
          **doc(SandboxCloseSessionRequest, result=CloseBashSessionResponse, codes=SANDBOX))
    async def close_session(ctx: Ctx, req: SandboxCloseSessionRequest, principal, call):
        agent = await ctx.sandboxes.agent(req.sandbox_id, principal)
        await agent.close_session(req.session)
        return ok_body({"session_type": "bash"})

    @api.post("/execute", **doc(SandboxCommand, result=CommandResponse, codes=(400, *SANDBOX, 504)))
    async def execute(request: Request):
        c = await parse(request, SandboxCommand)
        if c.cwd is not None:
            check_path(c.cwd, "cwd")
        agent = await ctx.agent(request, c.sandbox_id)
        started, t0 = time.time(), time.perf_counter()
        r = await agent.exec(c.command, shell=c.shell, env=c.env, cwd=c.cwd, timeout=c.timeout,
                             max_output=ctx.settings.max_output_bytes)
        ctx.sandboxes.commands.add(c.sandbox_id, "execute", None, c.command, r.exit_code,
                                   "timeout" if r.timed_out else "completed", started, time.perf_counter() - t0)
        return ok({"stdout": r.stdout, "stderr": r.stderr, "exit_code": r.exit_code, "timed_out": r.timed_out,
                   "truncated": r.truncated})

    @api.post("/read_file", **doc(SandboxReadFileRequest, result=ReadFileResponse, codes=(400, *SANDBOX)))
    async def read_file(request: Request):
        req = await parse(request, SandboxReadFileRequest)
        agent = await ctx.agent(request, req.sandbox_id)
        data = await agent.read_file(check_path(req.path))
        try:
            content = data.decode(req.encoding or "utf-8", req.errors or "strict")
        except (LookupError, UnicodeDecodeError) as exc:
            raise BadRequest(f"cannot decode {req.path} as {req.encoding or 'utf-8'}: {exc}; "
                             "pass errors='replace' or download the bytes") from None
        return ok({"content": content})

    @api.post("/write_file", **doc(SandboxWriteFileRequest, result=WriteFileResponse, codes=(400, *SANDBOX)))
    async def write_file(request: Request):
        req = await parse(request, SandboxWriteFileRequest)
        agent = await ctx.agent(request, req.sandbox_id)
        await agent.write_file(check_path(req.path), req.content.encode())
        return ok({"success": True, "message": f"wrote {req.path}"})

    @api.post("/upload", **doc(result=UploadResponse, codes=(400, *SANDBOX), openapi_extra={"requestBody": UPLOAD_BODY}))
    async def upload(request: Request):
        # Files are spooled to disk by the form parser and streamed to the sandbox in chunks.
        async with request.form(max_files=1, max_fields=16) as form:
            file, target, sandbox_id = form.get("file"), form.get("target_path"), form.get("sandbox_id")
            if not isinstance(file, UploadFile):
                raise BadRequest("multipart field 'file' (a file) is required")
            if not isinstance(target, str) or not isinstance(sandbox_id, str):
                raise BadRequest("multipart fields 'target_path' and 'sandbox_id' are required")
            agent = await ctx.agent(request, _sandbox_id.validate_python(sandbox_id))
            check_path(target, "target_path")
            await write_whole(agent, target, _read_chunks(file), UPLOAD_CHUNK)
            name = target.rstrip("/").rsplit("/", 1)[-1]
            return ok({"success": True, "message": f"uploaded {file.filename} to {target}", "file_name": name})

    return api
