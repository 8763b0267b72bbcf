"""The bwrap runtime's teardown queue (rock.runtime.teardown) on real cgroups: a deleted sandbox's
group, with a process still in it, and its directory are removed; the queue's thread serves
one delete after another without a new thread each time, and ends once it has been idle."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from rock.runtime import cgroups, teardown

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes cgroups: needs root")


def _sandbox(tmp_path: Path, owner: str) -> tuple[cgroups.Cgroup, Path, subprocess.Popen]:
    """A cgroup with a live process in it, and a sandbox directory with a file, as a delete leaves
    them for the queue (here the process is not killed yet: the queue's first attempt kills)."""
    sid = uuid.uuid4().hex[:10]
    group = cgroups.Cgroup(f"{cgroups.PREFIX}/{owner}/{sid}")
    group.create(None, None, None)
    proc = subprocess.Popen(["sleep", "60"])
    for path in group.join_files():
        Path(path).write_text(str(proc.pid))
    sandbox_dir = tmp_path / sid
    (sandbox_dir / "run").mkdir(parents=True)
    (sandbox_dir / "run" / "file").write_text("x")
    return group, sandbox_dir, proc


async def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def test_one_thread_serves_deletes_one_after_another_and_ends_when_idle(tmp_path, monkeypatch):
    owner = f"test-teardown-{uuid.uuid4().hex[:6]}"
    queue = teardown.Teardown()
    procs = []
    try:
        group, sandbox_dir, proc = _sandbox(tmp_path, owner)
        procs.append(proc)
        assert group.pids() == {proc.pid}  # the control: the group holds a live process
        queue.submit(group, sandbox_dir)
        await asyncio.wait_for(queue.wait(sandbox_dir), 30)
        assert not group.exists() and not sandbox_dir.exists()
        assert proc.wait(10) is not None  # killed by the queue's first attempt
        first = queue._thread
        assert first is not None and first.is_alive()  # parked, not ended, once its queue is empty

        # The next delete is served by the same thread.
        group2, sandbox_dir2, proc2 = _sandbox(tmp_path, owner)
        procs.append(proc2)
        queue.submit(group2, sandbox_dir2)
        await asyncio.wait_for(queue.wait(sandbox_dir2), 30)
        assert not group2.exists() and not sandbox_dir2.exists()
        assert queue._thread is first and first.is_alive()

        # Idle past IDLE_EXIT, the thread ends; a later delete starts another one.
        monkeypatch.setattr(teardown, "IDLE_EXIT", 0.1)
        group3, sandbox_dir3, proc3 = _sandbox(tmp_path, owner)
        procs.append(proc3)
        queue.submit(group3, sandbox_dir3)  # wakes the parked thread, which now uses the short idle time
        await asyncio.wait_for(queue.wait(sandbox_dir3), 30)
        assert await _wait_for(lambda: not first.is_alive())
        assert queue._thread is None and len(queue) == 0
        group4, sandbox_dir4, proc4 = _sandbox(tmp_path, owner)
        procs.append(proc4)
        queue.submit(group4, sandbox_dir4)
        assert queue._thread is not None and queue._thread is not first
        await asyncio.wait_for(queue.wait(sandbox_dir4), 30)
        assert not group4.exists() and not sandbox_dir4.exists()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        for name, group in cgroups.owned(owner).items():
            await group.destroy()
