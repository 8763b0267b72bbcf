"""A stop ends a sandbox whose processes fork as fast as they are killed: the group is frozen
before its members are killed (none runs or forks while the kill goes), then emptied and
removed; the wait goes on while members leave, and fails only when none does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from rock.runtime import cgroups

# Every process forks a child and both go on forking (held by the group's pids limit); a
# killed one's slot is taken by a new fork at once.
STORM = ("import os, time\n"
         "while True:\n"
         "    try:\n"
         "        os.fork()\n"
         "    except OSError:\n"
         "        time.sleep(0.001)\n")


async def _until(check, seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
async def test_a_forking_storm_is_frozen_killed_and_removed():
    group = cgroups.Cgroup(f"rock/test-storm-{uuid.uuid4().hex[:8]}")
    group.create(64 << 20, 0.5, 48)
    files = group.join_files()
    join = "".join(f"open({f!r}, 'w').write('0');" for f in files)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", join + STORM, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        await _until(lambda: len(group.pids()) >= 20)  # the control: the storm runs, and forks
        await group.destroy(timeout=20)
        assert not group.exists()
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if group.exists():
            group.kill()
            await group.destroy(timeout=60)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
