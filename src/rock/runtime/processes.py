"""Processes a backend starts or watches directly (bwrap, local, gvisor): their exit as a future
(a pidfd, no polling), their identity across pid reuse, and how they ended."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from pathlib import Path


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
