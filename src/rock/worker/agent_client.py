"""The worker's connection to one sandbox's agent: many concurrent requests over one Unix socket.

Built on an asyncio Protocol rather than streams: an ``echo`` round trip is a few tens of
microseconds of Python on each side, and the stream layer would double it.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import math
import os
import socket
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel

from rock.agent import protocol
from rock.errors import ERRORS, AgentError, AgentGone, AgentTimeout, RockError, SandboxPaused

try:  # a declared dependency, but kept optional as in rock.jsonutil
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

# orjson refuses (TypeError) what it would write otherwise than the protocol's encoder: str and int
# subclasses, integers past 64 bits, lone surrogates. It writes a NaN or an infinity as null, so
# only a request whose floats are known finite goes through it (``AgentClient._send``'s ``fast``).
_ORJSON = 0 if orjson is None else orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | \
    orjson.OPT_PASSTHROUGH_DATETIME


def _finite(*values: object) -> bool:
    """Whether each value is None, an int or a finite float (anything else: not known, False)."""
    for v in values:
        if not (v is None or type(v) is int or (type(v) is float and math.isfinite(v))):
            return False
    return True


class RunResult(BaseModel):
    """A command's end in a bash session: its output, exit code and working directory, and how it ended
    (completed, timeout, idle, interrupted, or the session ended)."""

    output: str
    exit_code: int | None
    cwd: str | None = None
    status: Literal["completed", "timeout", "idle", "interrupted", "ended"]
    truncated: bool = False


class ExecResult(BaseModel):
    """A one-shot command's end: stdout, stderr, exit code, and whether it timed out or its output was cut."""

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool = False
    truncated: bool = False  # the middle of stdout or stderr was cut past ``max_output`` (marked in it)


def _error(err: dict) -> RockError:
    kind, message = err.get("type", "AgentError"), err.get("message", "")
    cls = ERRORS.get(kind)
    if cls is not None and cls is not AgentError:
        return cls(message)
    return AgentError(message, kind=kind)  # its kind's status (rock.errors.STATUS)


class _Pending:
    __slots__ = ("future", "on_event")

    def __init__(self, future: asyncio.Future, on_event: Callable[[dict, bytes], Any] | None):
        self.future = future
        self.on_event = on_event


_SLICE = object()  # what a waiting slice's future resolves to when its timer fires first


def _end_slice(pending: "_Pending | None", future: asyncio.Future) -> None:
    if future.done():
        return
    if pending is not None and pending.future is future:
        pending.future = future.get_loop().create_future()  # the answer, when it comes, goes there
    future.set_result(_SLICE)


class _Proto(asyncio.Protocol):
    def __init__(self, client: "AgentClient"):
        self.client = client
        self.reader = protocol.FrameReader()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except protocol.ProtocolError as exc:
            self.client._fail_all(AgentGone(f"agent sent a bad frame: {exc}"))
            self.client.transport.close()
            return
        pending = self.client._pending
        for meta, body in frames:
            p = pending.get(meta["id"])
            if p is None:
                if meta["id"] == 0 and self.client.on_notice is not None:
                    self.client.on_notice(meta, body)
                continue
            if "event" in meta:
                if p.on_event is not None:
                    p.on_event(meta, body)
                continue
            del pending[meta["id"]]
            if p.future.done():
                continue
            if meta.get("ok"):
                p.future.set_result((meta.get("result") or {}, body))
            else:
                p.future.set_exception(_error(meta.get("error") or {}))

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._fail_all(AgentGone("the sandbox's agent went away (sandbox stopped or crashed)"))
        lost, self.client.on_lost = self.client.on_lost, None
        if lost is not None:
            lost()


class Channel:
    """The sending side of one open request (a terminal's input, a TCP stream): chunks in, then end of
    input."""

    __slots__ = ("client", "rid", "done")

    def __init__(self, client: "AgentClient", rid: int, done: asyncio.Future):
        self.client, self.rid, self.done = client, rid, done

    def send(self, body: bytes) -> None:
        """Send ``body`` as the next chunk (dropped once the request has ended)."""
        if not self.done.done():
            self.client._send({"id": self.rid, "chunk": True}, body)

    def close(self) -> None:
        """Send end of input (nothing when the request or the connection has ended)."""
        if not self.done.done() and not self.client.closed:
            self.client._send({"id": self.rid, "eof": True})


class AgentClient:
    """One connection to a sandbox's agent over its Unix socket: requests are multiplexed by id, so any
    number run at once; a lost connection fails them all with ``AgentGone``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self.closed = False
        # Called once when the agent drops the connection (killed, crashed, out of memory);
        # not when we close it ourselves.
        self.on_lost: Callable[[], Any] | None = None
        # Called with the agent's own notices (frame id 0): requests from code inside the sandbox.
        self.on_notice: Callable[[dict, bytes], Any] | None = None
        # How long a call waits for its answer past its own "timeout" (None: for ever). An op
        # whose "timeout" is None runs a command for as long as it takes: no deadline.
        self.reply_timeout: float | None = None
        # The sandbox's runtime handle where the caller gave one: a paused sandbox (the runtime
        # marks its handle) refuses calls at once instead of leaving them to a frozen agent.
        self.handle = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the first call (the transport's)
        # Waiting slices (see ``_await``): rid -> (when the slice ends, its _Pending, the future it waits on),
        # ended by one timer per connection, armed for the earliest, instead of one timer per call.
        self._slices: dict[int, tuple[float, _Pending | None, asyncio.Future]] = {}
        self._slice_timer: asyncio.TimerHandle | None = None
        self._slice_due = 0.0

    @classmethod
    async def connect(cls, socket_path: str, handle=None, paused_ok: bool = False) -> "AgentClient":
        """``handle``: the sandbox's (a RuntimeHandle); its agent must be the one answering.
        A paused sandbox refuses (SandboxPaused) unless ``paused_ok``: then the connection is made
        (accepted once the agent runs again) and its calls are refused while the handle says paused."""
        client = cls()
        if handle is not None:
            from rock.runtime.pausing import refuse_if_paused

            if not paused_ok:
                refuse_if_paused(handle, on_disk=True)
            client.handle = handle
        loop = asyncio.get_running_loop()
        try:
            client.transport, _ = await loop.create_unix_connection(lambda: _Proto(client), socket_path)
        except OSError as exc:
            raise AgentGone(f"cannot reach the sandbox's agent at {socket_path}: {exc.strerror or exc}") from None
        if handle is not None:
            from rock.runtime.peer import check_peer

            try:
                check_peer(client.transport.get_extra_info("socket"), handle)
            except BaseException:
                client.close()
                raise
        return client

    def _fail_all(self, exc: Exception) -> None:
        self.closed = True
        self._stop_slices()
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)

    def fail_pending(self, reason: str) -> None:
        """End every call still waiting with AgentGone(``reason``) and keep the connection: the
        answers the agent may still send for them are dropped (their ids are no longer pending)."""
        pending = list(self._pending.items())
        self._pending.clear()  # in place: a frame being read holds this very dict
        for rid, p in pending:
            if not p.future.done():
                p.future.set_exception(AgentGone(reason))
            if not self.closed:  # the agent stops work meant for nobody (a watch, a stream)
                self._send({"id": rid, "cancel": True})

    def close(self, reason: str | None = None) -> None:
        """Close the connection on purpose (``on_lost`` is not called). ``reason``: what the
        calls still waiting are told (AgentGone), instead of the agent having gone away."""
        self.on_lost = None
        self._stop_slices()
        if reason is not None:
            self._fail_all(AgentGone(reason))
        if self.transport is not None:
            self.transport.close()

    def _send(self, meta: dict, body: bytes = b"", fast: bool = False) -> None:
        """Write one frame. ``fast``: every float in ``meta`` is finite, so orjson may write it
        (the same JSON as the protocol's encoder, ~15 times faster), falling back where it refuses."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise AgentGone("the connection to the sandbox's agent is closed")
        if fast and orjson is not None and not body:
            try:
                raw = orjson.dumps(meta, option=_ORJSON)
            except TypeError:
                pass
            else:
                self.transport.write(protocol.HEADER.pack(len(raw), 0) + raw)
                return
        self.transport.write(protocol.encode(meta, body))

    def _start(self, op: str, args: dict | None, body: bytes, on_event, fast: bool = False) -> tuple[int, asyncio.Future]:
        if self.handle is not None and self.handle.extra.get("paused"):
            raise SandboxPaused(f"sandbox {self.handle.sandbox_id} is paused: resume it first")
        rid = next(self._ids)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[rid] = _Pending(future, on_event)
        self._send({"id": rid, "op": op, "args": args or {}}, body, fast)
        return rid, future

    async def _await(self, rid: int, future: asyncio.Future, deadline: float | None = None):
        try:
            if self.reply_timeout is None:
                return await future
            # Waited for in slices: a slice without the answer pings the agent, so a frozen agent
            # fails the call within about two slices even when the call may take much longer. A
            # slice is one timer that, when it fires first, resolves the awaited future with
            # _SLICE and hands the answer to come to a fresh one (asyncio.wait costs ~15 us a call). The
            # timer is the connection's, armed for the earliest slice: a timer of its own made and
            # cancelled per call costs ~4 us of the admin's CPU, ~5% of a command.
            loop = future.get_loop()
            end = None if deadline is None else loop.time() + deadline
            pending = self._pending.get(rid)
            while True:
                now = loop.time()
                left = self.reply_timeout if end is None else min(self.reply_timeout, end - now)
                if left > 0:
                    self._watch_slice(loop, rid, now + left, pending, future)
                    try:
                        value = await future
                    finally:
                        self._slices.pop(rid, None)
                    if value is not _SLICE:
                        return value
                    future = pending.future
                    if future.done():
                        return future.result()
                if end is not None and loop.time() >= end:
                    raise AgentTimeout(f"the sandbox's agent did not answer within {deadline:g}s (its processes may "
                                       "be stopped, starved of CPU or stuck); the sandbox can still be stopped or deleted")
                await self.ping()
        except (asyncio.CancelledError, AgentTimeout):
            self._given_up(rid)
            raise

    def _watch_slice(self, loop: asyncio.AbstractEventLoop, rid: int, due: float, pending: _Pending | None,
                     future: asyncio.Future) -> None:
        """End ``future``'s slice at ``due`` (loop time) unless the answer comes first (``_await`` then
        removes it from ``_slices``)."""
        if self._loop is None:  # a first call that did not come through _start (call_passing)
            self._loop = loop
        self._slices[rid] = (due, pending, future)
        timer = self._slice_timer
        if timer is None or due < self._slice_due:
            if timer is not None:
                timer.cancel()
            self._slice_due = due
            self._slice_timer = loop.call_at(due, self._end_slices)

    def _end_slices(self) -> None:
        """The slice timer: end the slices that are due, re-armed for the earliest one left."""
        self._slice_timer = None
        now = self._loop.time() if self._loop is not None else 0.0
        due: list[int] = []
        earliest = None
        for rid, (when, _, _) in self._slices.items():
            if when <= now + 0.001:  # a timer may fire a little before its time
                due.append(rid)
            elif earliest is None or when < earliest:
                earliest = when
        for rid in due:
            _, pending, future = self._slices.pop(rid)
            _end_slice(pending, future)
        if earliest is not None and self._loop is not None:
            self._slice_due = earliest
            self._slice_timer = self._loop.call_at(earliest, self._end_slices)

    def _stop_slices(self) -> None:
        if self._slice_timer is not None:
            self._slice_timer.cancel()
            self._slice_timer = None

    def _given_up(self, rid: int) -> None:
        # The caller gave up: tell the agent so it can stop work meant for nobody.
        if self._pending.pop(rid, None) is not None and not self.closed:
            self._send({"id": rid, "cancel": True})

    def _deadline(self, args: dict | None) -> float | None:
        if self.reply_timeout is None:
            return None
        args = args or {}
        if "timeout" in args and args["timeout"] is None:
            return None
        return float(args.get("timeout") or 0) + self.reply_timeout

    async def call(self, op: str, args: dict | None = None, body: bytes = b"",
                   on_event: Callable[[dict, bytes], Any] | None = None, fast: bool = False) -> tuple[dict, bytes]:
        """One agent op: its result and body (the agent's error raised as its ``rock.errors`` type);
        ``on_event`` gets each streamed event before the end. ``fast``: every float in ``args`` is
        finite (see ``_send``)."""
        rid, future = self._start(op, args, body, on_event, fast)
        if self.reply_timeout is None:  # no deadline: the answer itself, without _await's coroutine
            try:
                return await future
            except asyncio.CancelledError:
                self._given_up(rid)
                raise
        return await self._await(rid, future, self._deadline(args))

    async def call_passing(self, op: str, args: dict, body: bytes, fds: list[int]) -> tuple[dict, bytes]:
        """``call`` with open descriptors passed alongside (SCM_RIGHTS): the agent finds them in
        its args' ``fds``. The caller keeps (and closes) its own. The frame goes out by one
        ``sendmsg`` on the connection's socket once the transport has nothing queued, so it keeps
        its place among the frames; what the socket does not take at once follows through the
        transport."""
        if not fds:
            return await self.call(op, args, body)
        loop = asyncio.get_running_loop()
        end = loop.time() + (self.reply_timeout or 60.0)
        rid = next(self._ids)
        frame = protocol.encode({"id": rid, "op": op, "args": {**args, "fds": len(fds)}}, body)
        while True:
            if self.closed or self.transport is None or self.transport.is_closing():
                raise AgentGone("the connection to the sandbox's agent is closed")
            if self.handle is not None and self.handle.extra.get("paused"):
                raise SandboxPaused(f"sandbox {self.handle.sandbox_id} is paused: resume it first")
            if not self.transport.get_write_buffer_size():  # else the frame would pass what is queued
                with socket.socket(fileno=os.dup(self.transport.get_extra_info("socket").fileno())) as sock:
                    try:
                        sent = sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                if sent:
                    break
            if loop.time() > end:
                raise AgentTimeout("the sandbox's agent did not take a request within the reply timeout")
            await asyncio.sleep(0.001)
        future = loop.create_future()
        self._pending[rid] = _Pending(future, None)
        if sent < len(frame):
            self.transport.write(frame[sent:])
        return await self._await(rid, future, self._deadline(args))

    async def stream(self, op: str, args: dict | None = None) -> AsyncIterator[bytes]:
        """Yield the bodies of an op's ``data`` events (e.g. a tar being produced)."""
        queue: asyncio.Queue = asyncio.Queue()
        rid, future = self._start(op, args, b"", lambda meta, body: queue.put_nowait(body))
        future.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            await future
        finally:
            if not future.done() and self._pending.pop(rid, None) is not None and not self.closed:
                self._send({"id": rid, "cancel": True})

    async def upload(self, op: str, args: dict, chunks: AsyncIterable[bytes]) -> dict:
        """One agent op fed by ``chunks`` (a tar being unpacked): its result once the agent has taken them
        all."""
        rid, future = self._start(op, args, b"", None)
        try:
            async for chunk in chunks:
                if future.done():
                    break
                for i in range(0, len(chunk), protocol.CHUNK):
                    self._send({"id": rid, "chunk": True}, chunk[i : i + protocol.CHUNK])
                await self._drain()
            if not future.done():
                self._send({"id": rid, "eof": True})
        except BaseException:
            if not future.done():
                self._send({"id": rid, "cancel": True})
            raise
        result, _ = await self._await(rid, future)
        return result

    def open_channel(self, op: str, args: dict | None, on_event: Callable[[dict, bytes], Any]) -> "Channel":
        """A long-lived request that both sides keep talking on: the agent's events arrive at
        ``on_event``, ``Channel.send`` streams chunks to it, ``Channel.close`` ends it."""
        rid, future = self._start(op, args, b"", on_event)
        return Channel(self, rid, future)

    async def _drain(self) -> None:
        # Backpressure without streams: yield while the socket buffer is large.
        while self.transport is not None and self.transport.get_write_buffer_size() > 4 * protocol.CHUNK:
            await asyncio.sleep(0.001)

    # -- typed helpers ---------------------------------------------------------------------

    async def ping(self) -> dict:
        """The agent's pid, Python and version: it is up and serving."""
        return (await self.call("ping"))[0]

    async def spare_ready(self, timeout: float = 5.0) -> bool:
        """Wait (up to ``timeout`` s) until the agent's spare bash is up; False if it is not."""
        return bool((await self.call("session.spare", {"timeout": timeout}))[0]["ready"])

    async def create_session(self, session: str, env: dict[str, str] | None = None, cwd: str | None = None,
                             startup_source: list[str] | None = None, env_enable: bool = False) -> dict:
        """Open bash session ``session`` (its environment, working directory and startup files)."""
        args = {"session": session, "env": env, "cwd": cwd, "startup_source": startup_source, "env_enable": env_enable}
        return (await self.call("session.create", args))[0]

    @staticmethod
    def _output_events(on_output: Callable[[str], Any] | None):
        return None if on_output is None else (lambda meta, body: on_output(meta.get("text", "")))

    async def run(self, session: str, command: str, timeout: float | None = None, idle_timeout: float | None = None,
                  max_output: int | None = None, on_output: Callable[[str], Any] | None = None) -> RunResult:
        """Run ``command`` in ``session`` until it ends, times out or goes idle; ``on_output`` gets the
        output as it comes."""
        args = {"session": session, "command": command, "timeout": timeout, "idle_timeout": idle_timeout,
                "max_output": max_output, "stream": on_output is not None}
        result, _ = await self.call("session.run", args, on_event=self._output_events(on_output),
                                    fast=_finite(timeout, idle_timeout))
        return RunResult(**result)

    async def wait(self, session: str, timeout: float | None = None, idle_timeout: float | None = None,
                   on_output: Callable[[str], Any] | None = None) -> RunResult:
        """Wait for the command running in ``session`` (after a timeout or idle return) in the same way as
        ``run``."""
        args = {"session": session, "timeout": timeout, "idle_timeout": idle_timeout, "stream": on_output is not None}
        result, _ = await self.call("session.wait", args, on_event=self._output_events(on_output))
        return RunResult(**result)

    async def send_input(self, session: str, data: str) -> None:
        """Type ``data`` into the session's terminal."""
        await self.call("session.input", {"session": session, "data": data})

    async def interrupt(self, session: str, grace: float | None = None) -> RunResult:
        """Interrupt the session's running command (Ctrl-C, then harder after ``grace``): how it ended."""
        result, _ = await self.call("session.interrupt", {"session": session, "grace": grace})
        return RunResult(**{"output": "", "exit_code": None, **result})

    async def close_session(self, session: str) -> None:
        """Close ``session`` and end its processes."""
        await self.call("session.close", {"session": session})

    async def list_sessions(self) -> list[dict]:
        """The agent's open sessions."""
        return (await self.call("session.list"))[0]["sessions"]

    async def exec(self, command: str | list[str], shell: bool = False, env: dict[str, str] | None = None,
                   cwd: str | None = None, timeout: float | None = None, stdin: bytes = b"",
                   max_output: int | None = None) -> ExecResult:
        """Run ``command`` to its end; each of stdout and stderr keeps at most ``max_output`` bytes
        (head and tail, the cut marked in the text; the agent's default when None)."""
        args = {"command": command, "shell": shell or isinstance(command, str), "env": env, "cwd": cwd, "timeout": timeout,
                "max_output": max_output}
        result, body = await self.call("exec", args, stdin)
        if "stdout_bytes" in result:  # the output in the body (an agent older than that: in the result)
            n = result.pop("stdout_bytes")
            result.update(stdout=body[:n].decode(), stderr=body[n:].decode())
        return ExecResult(**result)

    async def proc_start(self, command: str | list[str], shell: bool = False, env: dict[str, str] | None = None,
                         cwd: str | None = None, name: str | None = None) -> dict:
        """Start a background process: its id and pid."""
        args = {"command": command, "shell": shell or isinstance(command, str), "env": env, "cwd": cwd, "name": name}
        return (await self.call("proc.start", args))[0]

    async def proc_status(self, proc_id: str) -> dict:
        """A background process's state and exit code."""
        return (await self.call("proc.status", {"proc_id": proc_id}))[0]

    async def proc_wait(self, proc_id: str, timeout: float | None = None) -> dict:
        """Wait up to ``timeout`` for a background process to end: its state."""
        return (await self.call("proc.wait", {"proc_id": proc_id, "timeout": timeout}))[0]

    async def proc_output(self, proc_id: str, stream: str = "stdout", offset: int = 0) -> tuple[bytes, int, bool]:
        """A background process's output from ``offset``: the bytes, the next offset, and whether it still
        runs."""
        result, body = await self.call("proc.output", {"proc_id": proc_id, "stream": stream, "offset": offset})
        return body, result["next_offset"], result["running"]

    async def proc_kill(self, proc_id: str, signal: int = 15) -> None:
        """Send ``signal`` to a background process."""
        await self.call("proc.kill", {"proc_id": proc_id, "signal": signal})

    async def proc_list(self) -> list[dict]:
        """The agent's background processes."""
        return (await self.call("proc.list"))[0]["procs"]

    async def read_file(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of a file in the sandbox, from ``offset`` (``length`` of them, or to the end)."""
        return (await self.call("file.read", {"path": path, "offset": offset, "length": length}))[1]

    async def write_file(self, path: str, data: bytes, mode: int | None = None, append: bool = False,
                         parents: bool = True) -> dict:
        """Write (or append) ``data`` to a file in the sandbox, with ``mode``; its size."""
        return (await self.call("file.write", {"path": path, "mode": mode, "append": append, "parents": parents}, data))[0]

    async def stat(self, path: str) -> dict:
        """A path's type, size, mode and times."""
        return (await self.call("file.stat", {"path": path}))[0]

    async def list_dir(self, path: str) -> list[dict]:
        """A directory's entries."""
        return (await self.call("file.list", {"path": path}))[0]["entries"]

    async def mkdir(self, path: str, parents: bool = True, mode: int | None = None) -> None:
        """Make a directory (with its parents by default)."""
        await self.call("file.mkdir", {"path": path, "parents": parents, "mode": mode})

    async def remove(self, path: str, recursive: bool = False) -> None:
        """Remove a file, or a directory (``recursive`` for a non-empty one)."""
        await self.call("file.remove", {"path": path, "recursive": recursive})

    async def rename(self, path: str, target: str, keep_mode: bool = False) -> None:
        """Rename ``path`` to ``target``."""
        await self.call("file.rename", {"path": path, "target": target, "keep_mode": keep_mode})

    async def chmod(self, path: str, mode: int) -> None:
        """Set a path's mode."""
        await self.call("file.chmod", {"path": path, "mode": mode})

    async def chown(self, path: str, uid: int = -1, gid: int = -1, user: str | None = None, group: str | None = None) -> None:
        """Set a path's owner and group, by id or by name."""
        await self.call("file.chown", {"path": path, "uid": uid, "gid": gid, "user": user, "group": group})

    def tar_get(self, path: str) -> AsyncIterator[bytes]:
        """A tar of ``path``, streamed as the agent makes it."""
        return self.stream("tar.get", {"path": path})

    async def tar_put(self, path: str, chunks: AsyncIterable[bytes]) -> dict:
        """Unpack the tar in ``chunks`` into ``path``."""
        return await self.upload("tar.put", {"path": path}, chunks)

    async def stats(self) -> dict:
        """The sandbox's cgroup use as its agent reads it: cpu seconds, memory and pids, with their limits."""
        return (await self.call("stats"))[0]

    async def tcp_connect(self, port: int, host: str | None = None):
        """A TCP connection to ``port`` inside the sandbox (no sandbox network needed)."""
        from rock.worker.tcp_stream import TcpStream

        return await TcpStream.open(self, port, host)
