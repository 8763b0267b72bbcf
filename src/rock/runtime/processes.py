"""Processes a backend starts or watches directly (bwrap, local, gvisor): their exit as a future
(a pidfd, no polling), their identity across pid reuse, and how they ended."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from pathlib import Path


class Child:
    """A child process with asyncio streams, as ``asyncio.subprocess.Process`` has, started by Python's
    own ``subprocess`` (see ``start``)."""

    def __init__(self, popen: subprocess.Popen, stdin: asyncio.StreamWriter | None,
                 stdout: asyncio.StreamReader | None, stderr: asyncio.StreamReader | None):
        self.popen = popen
        self.pid = popen.pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._exited = exit_future(popen)

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited and been reaped, else None."""
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """Wait for it to exit; its exit status."""
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """SIGKILL it, unless it has been reaped (its pid may be another process's by then)."""
        if not self._exited.done():
            self.popen.kill()

    async def communicate(self) -> tuple[bytes | None, bytes | None]:
        """Read its piped outputs to their end and wait for it to exit (its input, if piped, is closed first)."""
        if self.stdin is not None:
            self.stdin.close()
        out, err = await asyncio.gather(*(s.read() if s is not None else _none() for s in (self.stdout, self.stderr)))
        await self.wait()
        return out, err


async def _none() -> None:
    return None


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """A pipe writer's protocol: flow control for ``drain``, and the waiter ``wait_closed`` asks for."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(loop=loop)
        self._closed = loop.create_future()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future:
        return self._closed


class _ReadProtocol(asyncio.StreamReaderProtocol):
    """A pipe reader's protocol that closes its transport at the pipe's end, as asyncio's own
    pipe transport does and uvloop's does not (its fd would stay open until the transport is
    collected)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._pipe_transport = transport
        super().connection_made(transport)

    def eof_received(self) -> bool:
        super().eof_received()
        self._pipe_transport.close()
        return False


def _owned_by_transport(pipe, loop: asyncio.AbstractEventLoop):
    """A file object for ``pipe``'s end that is closed once, by the transport made on it.

    The Popen's own file object is closed here: left open, it and the transport would each close
    the same number, the second close whenever the garbage collector got to it, hitting whatever
    descriptor the number had been given to meanwhile (a socket of the admin's, whose uvloop loop
    then aborts). The transport gets a duplicate. uvloop's transports close their fd in libuv and
    then close the file object too, so there the file object must not own it; asyncio's close it
    through the file object, which must."""
    mode = "rb" if "r" in pipe.mode else "wb"
    fd = os.dup(pipe.fileno())
    pipe.close()
    return open(fd, mode, buffering=0, closefd=not type(loop).__module__.startswith("uvloop"))


async def start(argv: list[str], *, stdin=None, stdout=None, stderr=None, **popen_args) -> Child:
    """Start ``argv`` with ``subprocess.Popen`` (same arguments; PIPE ends become asyncio streams).

    Every host process the admin starts goes through here, not ``asyncio.create_subprocess_exec``:
    the admin's loop is uvloop, whose spawn does not close the parent's inheritable fds (its
    ``close_fds`` is not implemented), so each one would reach the child, and through runsc or a
    zygote, a sandbox's processes. Seen: with 256 of them in the admin, every gVisor boot died
    ("unable to remap stdios, FD 256 is already in use"). Popen closes all but the child's stdio
    (vfork and exec, no slower than uvloop's spawn)."""
    loop = asyncio.get_running_loop()
    popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True, **popen_args)
    try:
        readers: list[asyncio.StreamReader | None] = []
        for pipe in (popen.stdout, popen.stderr):
            if pipe is None:
                readers.append(None)
                continue
            reader = asyncio.StreamReader(limit=2**16, loop=loop)  # asyncio.subprocess's limit
            await loop.connect_read_pipe(lambda r=reader: _ReadProtocol(r, loop=loop), _owned_by_transport(pipe, loop))
            readers.append(reader)
        writer = None
        if popen.stdin is not None:
            transport, protocol = await loop.connect_write_pipe(lambda: _WriteProtocol(loop),
                                                                _owned_by_transport(popen.stdin, loop))
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    return Child(popen, writer, readers[0], readers[1])


def exit_future(popen: subprocess.Popen) -> asyncio.Future:
    """A future that completes with ``popen``'s exit status when it exits (and reaps it)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def done(code: int) -> None:
        if not fut.done():
            fut.set_result(code)

    try:
        exited = pid_exit_future(popen.pid)
    except (AttributeError, OSError):  # no pidfd: macOS, old kernels
        threading.Thread(target=lambda: loop.call_soon_threadsafe(done, popen.wait()), daemon=True).start()
        return fut
    exited.add_done_callback(lambda _: done(popen.wait()))
    return fut


def pid_exit_future(pid: int) -> asyncio.Future:
    """A future that completes when ``pid`` exits, also when it is not our child: a pidfd turns
    "this process exited" into a readable fd, no thread, no polling."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fut.set_result(None)
        return fut

    def on_exit() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not fut.done():
            fut.set_result(None)

    def cancelled(_: asyncio.Future) -> None:
        if fut.cancelled():
            loop.remove_reader(fd)
            os.close(fd)

    loop.add_reader(fd, on_exit)
    fut.add_done_callback(cancelled)
    return fut


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: with the pid it identifies a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int, start_time: int | None) -> bool:
    """True when ``pid`` still runs and is the same process (not a zombie, not a reused pid)."""
    if not os.path.exists("/proc/self/stat"):  # no procfs (macOS): existence is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return False
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


async def exit_reason(exited: asyncio.Future, log_path: Path, who: str | None = None) -> str:
    """Wait for a sandbox's first process (or ``who``) to exit; say how, with the end of its output."""
    code = await asyncio.shield(exited)
    how = f"exit status {code}" if code is not None else "exited"
    return f"{who + ' ' if who else ''}{how}; output: {tail(log_path)}"


def kill_group(pid: int | None, start_time: int | None) -> bool:
    """SIGKILL the process group led by ``pid`` if that very process (``start_time``) still runs;
    False when it did not."""
    if pid is not None and process_alive(pid, start_time):
        try:
            os.killpg(pid, signal.SIGKILL)
            return True
        except ProcessLookupError:
            pass
    return False


def tail(path: Path, limit: int = 2000) -> str:
    """The last ``limit`` bytes of a log file as text (``(none)`` when empty or missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            return f.read().decode(errors="replace").strip() or "(none)"
    except OSError:
        return "(none)"
