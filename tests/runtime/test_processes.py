"""The host processes the admin starts get none of its file descriptors.

The admin serves on uvloop, whose subprocess spawn does not close the parent's inheritable fds
(``close_fds`` is unimplemented there), so ``rock.runtime.processes.start`` spawns with Python's
own ``subprocess`` instead. Each test holds an inheritable fd on a marker file of its own and looks
for that marker in the child's fd table, with uvloop's own spawn as the control that shows the fd
would have leaked.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import uvloop

from rock.runtime import processes

LIST_FDS = ["sh", "-c", "ls -l /proc/self/fd/"]
SRC = Path(__file__).resolve().parents[2] / "src" / "rock"
# asyncio's spawns, which on the admin's uvloop pass every inheritable fd on
LOOP_SPAWN = re.compile(r"\bcreate_subprocess_(exec|shell)\b|\.subprocess_(exec|shell)\(")


def open_inheritable(path: Path, count: int = 1) -> list[int]:
    path.touch()
    fds = [os.open(path, os.O_RDONLY) for _ in range(count)]
    for fd in fds:
        os.set_inheritable(fd, True)
    return fds


def test_a_child_started_on_uvloop_holds_none_of_the_parents_inheritable_fds(tmp_path):
    marker = tmp_path / f"marker-{uuid.uuid4().hex}"
    fds = open_inheritable(marker)

    async def both() -> tuple[str, str]:
        ours = await processes.start(LIST_FDS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await ours.communicate()
        assert ours.returncode == 0
        control = await asyncio.create_subprocess_exec(*LIST_FDS, stdout=subprocess.PIPE)
        leaked, _ = await control.communicate()
        return out.decode(), leaked.decode()

    try:
        ours, control = uvloop.run(both())
    finally:
        for fd in fds:
            os.close(fd)
    assert marker.name in control, "uvloop's own spawn closes fds now; processes.start may go"  # the control
    assert marker.name not in ours, ours


def test_no_host_process_is_started_by_the_loops_own_spawn():
    """Every host process of ROCK's goes through processes.start; the in-sandbox agent (rock/agent)
    runs on the standard loop in a process of its own and may spawn as it likes."""
    found = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py")
             if path.parts[len(SRC.parts)] != "agent" and path.name != "processes.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if LOOP_SPAWN.search(line)]
    assert found == [], found
    # the control: the pattern finds both forms
    assert LOOP_SPAWN.search("await asyncio.create_subprocess_exec(x)") and LOOP_SPAWN.search("loop.subprocess_exec(p, x)")


async def test_a_childs_pipes_are_asyncio_streams_both_ways():
    """The zygote's use: lines written to its input come back on its output; EOF ends it."""
    child = await processes.start(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    child.stdin.write(b"one\n")
    await child.stdin.drain()
    assert await asyncio.wait_for(child.stdout.readline(), 10) == b"one\n"
    assert child.returncode is None
    child.stdin.close()
    assert await asyncio.wait_for(child.wait(), 10) == 0
    assert child.returncode == 0 and await child.stdout.read() == b""


def test_a_childs_pipe_is_closed_once_so_no_later_descriptor_is_closed_with_it():
    """On uvloop a pipe transport closes its fd itself: were the Popen's own file object to close
    the same number too, the later of the two closes could close whatever the number was given to
    meanwhile (here a socket; in the admin, a connection its loop then aborts on)."""
    import gc
    import socket

    async def run() -> None:
        child = await processes.start(["sh", "-c", "echo out; echo err >&2"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert await child.communicate() == (b"out\n", b"err\n")
        for pipe in (child.popen.stdin, child.popen.stdout, child.popen.stderr):
            pipe.close()  # what the garbage collector does to the Popen's file objects
        sockets = [socket.socket() for _ in range(3)]  # the lowest free numbers: the pipes' if freed just now
        try:
            del child
            gc.collect()  # and to the transports
            await asyncio.sleep(0.05)
            for s in sockets:
                os.fstat(s.fileno())  # each still open: no transport closed its number under it
        finally:
            for s in sockets:
                s.close()

    uvloop.run(run())


@pytest.mark.gvisor
def test_a_gvisor_sandbox_boots_with_hundreds_of_inheritable_fds_in_the_admin(tmp_path):
    """256 inheritable fds in the admin's process made every runsc boot die ("unable to remap
    stdios, FD 256 is already in use"); none of them reaches runsc's processes now."""
    from rock.sdk.sandbox import Sandbox
    from tests.admin.harness import Admin
    from tests.sdk.test_sandbox import config

    marker = tmp_path / f"marker-{uuid.uuid4().hex}"
    fds = open_inheritable(marker, 300)
    server = Admin("gvisor").start()  # served on uvloop, as `rock admin` is

    async def run() -> tuple[str, list[str]]:
        sandbox = Sandbox(config(server))
        await sandbox.start()
        try:
            said = (await sandbox.arun("echo booted")).output.strip()
            # while it runs: which processes hold the marker open
            return said, [pid for pid in os.listdir("/proc") if pid.isdigit() and _holds(pid, marker)]
        finally:
            await sandbox.delete()
            await sandbox.aclose()

    try:
        said, holders = asyncio.run(run())
        assert said == "booted"
        assert holders == [str(os.getpid())], holders  # only this process: no runsc, gofer or boot
    finally:
        server.stop(stop_sandboxes=True)
        for fd in fds:
            os.close(fd)


def _holds(pid: str, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False
