"""A stop ends a sandbox whose processes fork as fast as they are killed: the group is frozen
before its members are killed (none runs or forks while the kill goes), then emptied and
removed; the wait goes on while members leave, and fails only when none does."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time
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


# Allocates and touches memory until the group's limit stops it (the kernel reclaims, then its
# OOM killer ends it), over and over: the sandbox lives at its memory limit while it is stopped.
HOG = "while :; do python3 -c 'b = []\nwhile True: b.append(bytes(range(256)) * 4096)'; done"  # 1 MiB a turn


def _oom_kills(group: cgroups.Cgroup) -> int:
    """How many of the group's processes the kernel's OOM killer ended at its memory limit."""
    path = cgroups.ROOT / group.rel / "memory.events" if cgroups.is_v2() else group.dirs["memory"] / "memory.oom_control"
    return sum(int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("oom_kill "))


@pytest.mark.bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
def test_a_sandbox_allocating_hard_at_its_memory_limit_is_stopped_and_leaves_nothing():
    """A stop of a sandbox under real memory pressure (processes allocating at its limit, killed
    by the OOM killer and started again) freezes it, kills it and removes its cgroup, with the
    admin's default stop wait: the stop is answered, nothing of the sandbox is left."""
    import httpx

    from rock.admin.context import PREFIX
    from tests.admin.harness import Admin

    admin = Admin("bwrap").start()
    sid = None
    try:
        with httpx.Client(base_url=admin.url + PREFIX, timeout=120) as c:
            r = c.post("/start", json={"memory": "96m", "cpus": 0.5})
            assert r.status_code == 200, r.text
            sid = r.json()["result"]["sandbox_id"]
            group = cgroups.Cgroup(admin.app.state.rock.worker.get(sid).runtime_id)  # bwrap's: the group's path
            assert group.exists()
            for _ in range(2):  # two hogs, each in its own loop, detached from the command
                r = c.post("/execute", json={"sandbox_id": sid, "timeout": 30, "command": (
                    f"nohup sh -c {shlex.quote(HOG)} >/dev/null 2>&1 &")})
                assert r.status_code == 200 and r.json()["result"]["exit_code"] == 0, r.text
            # the control: the hogs run, reach the limit and are killed there, over and over
            deadline = time.monotonic() + 120
            while _oom_kills(group) < 5:
                assert time.monotonic() < deadline, "the hogs never reached the sandbox's memory limit"
                time.sleep(0.2)
            assert len(group.pids()) >= 3
            r = c.post("/stop", json={"sandbox_id": sid})
            assert r.status_code == 200, r.text
            assert not group.exists() and not group.pids()
            r = c.get("/get_status", params={"sandbox_id": sid, "include_all_states": "true"})
            assert r.json()["result"]["state"] == "stopped", r.text
    finally:
        if sid is not None:
            httpx.post(admin.url + PREFIX + "/delete", json={"sandbox_id": sid}, timeout=120)
        admin.stop(stop_sandboxes=True)
