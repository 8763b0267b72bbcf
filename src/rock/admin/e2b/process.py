"""envd's ``process.Process`` service onto the agent's process table (rock/agent/e2b/process.py)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from rock.admin.context import Ctx
from rock.admin.e2b.common import Users, route, basic_user, data_record, resolve
from rock.admin.e2b.connect import Feed, deadline_of, keepalive_of, stream_messages, stream_response, unary_message
from rock.admin.e2b.errors import from_rock
from rock.admin.e2b.framing import json_response
from rock.errors import ConnectError, SandboxGone

log = logging.getLogger("rock.admin.e2b")
SIGNALS = {"SIGNAL_SIGKILL": 9, "SIGNAL_SIGTERM": 15, 9: 9, 15: 15}
KEEPALIVE = {"event": {"keepalive": {}}}
MAX_BUFFERED = 64 << 20  # output bytes one stream may hold for a client that does not read


def _selector(msg: dict) -> dict:
    sel = msg.get("process") or {}
    if not isinstance(sel, dict) or ("pid" not in sel and not sel.get("tag")):
        raise ConnectError("invalid_argument", "process must select a pid or a tag")
    if "pid" in sel:
        try:
            return {"pid": int(sel["pid"])}
        except (TypeError, ValueError):
            raise ConnectError("invalid_argument", "process.pid must be an integer") from None
    return {"tag": str(sel["tag"])}


def _b64(value) -> bytes:
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ConnectError("invalid_argument", "input must be base64 bytes") from None


def _input(msg: dict) -> tuple[str, bytes]:
    data = msg.get("input") or {}
    if "pty" in data:
        return "pty", _b64(data["pty"])
    return "stdin", _b64(data.get("stdin"))


def _event(meta: dict, body: bytes) -> dict:
    if meta["event"] == "start":
        return {"event": {"start": {"pid": meta["pid"]}}}
    return {"event": {"data": {meta["stream"]: base64.b64encode(body).decode()}}}


def router(ctx: Ctx, users: Users) -> APIRouter:
    api = APIRouter()
    svc = ctx.sandboxes

    async def agent_of(request: Request):
        record = data_record(ctx, request)
        try:
            return record, await svc.agent(record.sandbox_id, record.owner)
        except Exception as exc:  # noqa: BLE001 - mapped to what the SDK expects
            raise from_rock(exc, record.sandbox_id) from None

    async def follow(request: Request, op: str, args: dict, what: str, opened=None) -> Response:
        """A server stream: the agent's start/data events, keepalives, then end (or the error)."""
        record, agent = opened or await agent_of(request)
        feed = Feed()
        first = asyncio.get_running_loop().create_future()  # the first event, or the call's end
        overflowed = False

        def on_event(meta: dict, body: bytes) -> None:
            # The agent does not wait for a slow client: past MAX_BUFFERED this stream lets go of the
            # process (which runs on; connect(pid) follows it again) rather than hold all it writes.
            nonlocal overflowed
            if feed.size > MAX_BUFFERED:
                if not overflowed:
                    overflowed = True
                    call.cancel()
                return
            svc.touch(record)  # output is use: the idle lease runs from the last of it
            feed.push(_event(meta, body))
            if not first.done():
                first.set_result(True)

        def ended(_) -> None:
            if not first.done():
                first.set_result(False)
                if call.cancelled() or call.exception() is not None:
                    return  # failed before any event: the handler answers with the error itself
            if overflowed:
                return feed.end(ConnectError("resource_exhausted", f"{what} wrote faster than the client read (over "
                                             f"{MAX_BUFFERED >> 20} MiB waiting); it runs on: follow it again with "
                                             "connect(pid)"))
            if call.cancelled():
                return feed.end()  # the client went away: nobody reads what follows
            exc = call.exception()
            if exc is not None:
                error = from_rock(exc, record.sandbox_id)
                if not isinstance(error, (ConnectError, SandboxGone)):
                    log.error("e2b: %s in sandbox %s failed", what, record.sandbox_id, exc_info=exc)
                    error = ConnectError("internal", f"{what} failed: {exc}")
                return feed.end(error)
            end = call.result()[0].get("end")
            if end and not end.pop("expired", False):
                feed.push({"event": {"end": end}})
                feed.end()
            elif end or deadline:  # the agent killed it at the deadline; the client has given up by now
                feed.end(ConnectError("deadline_exceeded", f"{what} ran past its timeout of {deadline:g}s and was killed"))
            else:
                feed.end()

        deadline = deadline_of(request)
        call = asyncio.ensure_future(agent.call(op, args, on_event=on_event))
        call.add_done_callback(ended)
        # The first event decides between a stream and an error before any byte is sent.
        if not await first:
            try:
                call.result()
            except Exception as exc:  # noqa: BLE001
                raise from_rock(exc, record.sandbox_id) from None

        async def closed():
            if not call.done():  # the client went away: the process keeps running (background commands)
                call.cancel()

        log.debug("e2b: %s in sandbox %s (%s)", what, record.sandbox_id, op)
        return stream_response(feed, KEEPALIVE, keepalive_of(request), closed)

    @route(api, "/process.Process/Start", "POST", fast=True)
    async def start(request: Request):
        msg = (await stream_messages(request))[0]
        proc = msg.get("process") or {}
        if not isinstance(proc, dict) or not isinstance(proc.get("cmd"), str) or not proc["cmd"]:
            raise ConnectError("invalid_argument", "process.cmd is required")
        envs = proc.get("envs") or {}
        if not isinstance(envs, dict) or not isinstance(proc.get("args") or [], list):
            raise ConnectError("invalid_argument", "process.envs must be an object and process.args a list")
        record, agent = await agent_of(request)
        user = basic_user(request)
        try:
            info = await users.get(agent, record.sandbox_id, user) if proc.get("cwd") else None
        except Exception as exc:  # noqa: BLE001 - e.g. a user the image lacks
            raise from_rock(exc, record.sandbox_id) from None
        pty = msg.get("pty")
        size = (pty.get("size") or {}) if isinstance(pty, dict) else None
        args = {"cmd": proc["cmd"], "args": proc.get("args") or [], "envs": envs,
                "cwd": resolve(proc["cwd"], info["home"]) if info else None, "user": user,
                "stdin": msg.get("stdin", True) is not False, "tag": msg.get("tag"),
                "pty": None if size is None else {"cols": size.get("cols", 80), "rows": size.get("rows", 24)},
                "deadline": deadline_of(request), "sandbox_id": record.sandbox_id, "timeout": None}
        return await follow(request, "envd.start", args, "process " + proc["cmd"], (record, agent))

    @route(api, "/process.Process/Connect", "POST")
    async def connect(request: Request):
        msg = (await stream_messages(request))[0]
        return await follow(request, "envd.connect", {**_selector(msg), "timeout": None}, "connect")

    async def unary(request: Request, op: str, args: dict, body: bytes = b"") -> dict:
        record, agent = await agent_of(request)
        try:
            return (await agent.call(op, args, body))[0]
        except Exception as exc:  # noqa: BLE001
            raise from_rock(exc, record.sandbox_id) from None

    @route(api, "/process.Process/List", "POST")
    async def list_processes(request: Request):
        await unary_message(request)
        return json_response({"processes": (await unary(request, "envd.list", {}))["processes"]})

    @route(api, "/process.Process/SendInput", "POST")
    async def send_input(request: Request):
        msg = await unary_message(request)
        stream, data = _input(msg)
        await unary(request, "envd.input", {**_selector(msg), "stream": stream}, data)
        return json_response({})

    @route(api, "/process.Process/StreamInput", "POST")
    async def stream_input(request: Request):
        messages = await stream_messages(request)
        selector = None
        for msg in messages:
            if "start" in msg:
                selector = _selector(msg["start"])
            elif "data" in msg:
                if selector is None:
                    raise ConnectError("invalid_argument", "StreamInput must start with a start event")
                stream, data = _input(msg["data"])
                await unary(request, "envd.input", {**selector, "stream": stream}, data)

        feed = Feed()
        feed.push({})
        feed.end()
        return stream_response(feed, {}, 60.0)

    @route(api, "/process.Process/SendSignal", "POST")
    async def send_signal(request: Request):
        msg = await unary_message(request)
        sig = SIGNALS.get(msg.get("signal"))
        if sig is None:
            raise ConnectError("invalid_argument", "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM")
        await unary(request, "envd.signal", {**_selector(msg), "signal": sig})
        return json_response({})

    @route(api, "/process.Process/CloseStdin", "POST")
    async def close_stdin(request: Request):
        msg = await unary_message(request)
        await unary(request, "envd.close_stdin", _selector(msg))
        return json_response({})

    @route(api, "/process.Process/Update", "POST")
    async def update(request: Request):
        msg = await unary_message(request)
        size = ((msg.get("pty") or {}).get("size")) or {}
        await unary(request, "envd.resize", {**_selector(msg), "cols": size.get("cols", 80), "rows": size.get("rows", 24)})
        return json_response({})

    return api
