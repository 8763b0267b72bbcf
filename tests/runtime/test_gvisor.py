"""What only the gvisor backend does: full (memory and processes) snapshots and forks.

The rest of what it shares with the others runs in the parametrized runtime tests
(test_pause_snapshot, test_runtime_isolation, test_escapes, ...)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from rock.errors import SandboxStartError, SnapshotNotFound
from rock.runtime import cgroups

from tests.runtime.test_pause_snapshot import agent, ask_counter, start_counter  # noqa: F401 - agent is a fixture
from tests.runtime.test_runtime_isolation import MEMORY_HOG

pytestmark = pytest.mark.gvisor


@pytest.fixture
def gvisor(make_runtime):
    return make_runtime("gvisor")


async def test_a_full_fork_continues_the_processes_memory_in_every_child(gvisor, new_spec, sandboxes, agent):  # noqa: F811
    parent = await sandboxes(gvisor, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        await start_counter(client)
        assert await ask_counter(client) == "1"
        assert await ask_counter(client) == "2"
        await client.exec('echo from-parent > "$HOME/shared"', shell=True)
    snap, children = await gvisor.fork(parent, 3, owner="alice", mode="full")
    try:
        assert snap.mode == "full" and len(children) == 3
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(agent(c)) for c in children]
            # Each child's counter process goes on from the 2 it held in memory, on its own.
            assert [await ask_counter(c) for c in clients] == ["3", "3", "3"]
            assert await ask_counter(clients[0]) == "4"
            assert [await ask_counter(c) for c in clients] == ["5", "4", "4"]
            await clients[1].exec('echo mine > "$HOME/only-second"', shell=True)
            seen = [(await c.exec('cat "$HOME/shared"; test -e "$HOME/only-second" && echo yes || echo no',
                                  shell=True)).stdout for c in clients]
            assert seen == ["from-parent\nno\n", "from-parent\nyes\n", "from-parent\nno\n"]
        # The parent goes on as well, from where it was.
        async with agent(parent) as client:
            assert await ask_counter(client) == "3"
            assert (await client.exec('test -e "$HOME/only-second" && echo yes || echo no', shell=True)).stdout == "no\n"
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)


async def test_a_full_snapshot_outlives_its_source(gvisor, new_spec, agent):  # noqa: F811
    source = await gvisor.create(new_spec(image="python:3.11"))
    try:
        async with agent(source) as client:
            await start_counter(client)
            assert await ask_counter(client) == "1"
        snap = await gvisor.snapshot(source, f"full-{uuid.uuid4().hex[:8]}", owner="alice", mode="full")
    finally:
        await gvisor.destroy(source)
    try:
        started = await gvisor.start_from(snap)
        try:
            async with agent(started) as client:
                assert await ask_counter(client) == "2"
        finally:
            await gvisor.destroy(started)
    finally:
        await gvisor.delete_snapshot(snap)


async def test_a_full_forks_children_start_while_its_source_restores_itself_all_or_none(gvisor, new_spec, sandboxes,
                                                                                         agent, monkeypatch):  # noqa: F811
    # A full fork's checkpoint ends the source, which restores itself from the image its children
    # start from: the children start beside that restore, not after it (one restore less in a row).
    parent = await sandboxes(gvisor, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        await start_counter(client)
        assert await ask_counter(client) == "1"
    events: list[tuple[str, float]] = []
    started: list = []
    go_on, start_from = gvisor._go_on_from, gvisor.start_from

    async def timed_go_on(handle, image):
        events.append(("source", time.monotonic()))
        await go_on(handle, image)
        events.append(("source back", time.monotonic()))

    async def timed_start(snapshot, spec=None):
        events.append(("child", time.monotonic()))
        child = await start_from(snapshot, spec)
        started.append(child)
        return child

    monkeypatch.setattr(gvisor, "_go_on_from", timed_go_on)
    monkeypatch.setattr(gvisor, "start_from", timed_start)
    snap, children = await gvisor.fork(parent, 2, owner="alice", mode="full")
    try:
        order = [name for name, _ in sorted(events, key=lambda e: e[1])]
        assert order.index("child") < order.index("source back") and order.count("child") == 2, order
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(agent(c)) for c in children]
            assert [await ask_counter(c) for c in clients] == ["2", "2"]
        async with agent(parent) as client:  # back, from its memory, when the fork returned
            assert await ask_counter(client) == "2"
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)

    # All or none: a source that fails to come back takes the fork's children and snapshot with it.
    async def failing_go_on(handle, image):
        await go_on(handle, image)
        raise SandboxStartError("the source did not come back")

    started.clear()
    monkeypatch.setattr(gvisor, "_go_on_from", failing_go_on)
    with pytest.raises(SandboxStartError, match="did not come back"):
        await gvisor.fork(parent, 2, owner="alice", mode="full", name="all-or-none")
    assert len(started) == 2  # the control: both children had started
    for child in started:
        assert not await gvisor.alive(child) and _groups_of(child.sandbox_id) == []
    with pytest.raises(SnapshotNotFound):
        gvisor.snapshots.get("all-or-none", "alice")


async def test_a_full_snapshot_whose_copy_fails_brings_its_source_back_and_leaves_no_snapshot(
        gvisor, new_spec, sandboxes, agent, monkeypatch):  # noqa: F811
    # The checkpoint ends the source's processes; the files are copied after it. A copy that fails
    # (a full disk) must not leave the source ended: it comes back from the image all the same.
    import rock.runtime.gvisor.runtime as gvisor_runtime

    source = await sandboxes(gvisor, new_spec(image="python:3.11"))
    async with agent(source) as client:
        await start_counter(client)
        assert await ask_counter(client) == "1"
    copies = []

    def failing_copy(src, dst):
        copies.append(dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gvisor_runtime, "copy_tree", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        await gvisor.snapshot(source, "copy-fails", owner="alice", mode="full")
    assert copies  # the control: the checkpoint was taken and its copy attempted
    with pytest.raises(SnapshotNotFound):
        gvisor.snapshots.get("copy-fails", "alice")
    async with agent(source) as client:  # back from its memory: the counter goes on
        assert await ask_counter(client) == "2"
    # The checkpointed container is deleted all the same, and with it the owner's group once
    # the restored sandbox's goes: runsc removes only the container's own group.
    await gvisor.destroy(source)
    await gvisor._settle()
    assert _groups_of(source.sandbox_id) == [] and cgroups.owner_dirs(gvisor.owner_key) == []


def _groups_of(sandbox_id: str) -> list[str]:
    """The sandbox's cgroup directories in every hierarchy the host mounts: runsc makes its groups
    in all of them (blkio, devices, cpuset, name=systemd...), not only in those ROCK limits."""
    return sorted(str(d.relative_to(root.parent)) for root in cgroups.hierarchies()
                  for d in root.glob(f"rock/*/{sandbox_id}*"))


def _memory_limit(group: cgroups.Cgroup) -> int:
    d = group.dirs["memory"]
    text = (d / ("memory.max" if cgroups.is_v2() else "memory.limit_in_bytes")).read_text().strip()
    return int(text) if text.isdigit() else -1


async def test_a_source_restored_in_place_keeps_a_cgroup_its_checkpointed_containers_delete_leaves_alone(
        gvisor, new_spec, agent):  # noqa: F811
    # A full snapshot checkpoints the source and restores it in place under a new container id;
    # the checkpointed container's delete, in the background, removes the groups runsc made for
    # it. It used to remove them from under the restore now and then (the snapshot failed), and
    # otherwise gave up on them busy and left four behind for good.
    source = await gvisor.create(new_spec(image="python:3.11", memory_bytes=256 << 20))
    destroyed = False
    try:
        async with agent(source) as client:
            await start_counter(client)
            assert await ask_counter(client) == "1"
        for round_ in (1, 2):  # the second checkpoint is of a restored container
            snap = await gvisor.snapshot(source, f"full-{uuid.uuid4().hex[:8]}", owner="alice", mode="full")
            await gvisor.delete_snapshot(snap)
            await gvisor._settle()  # the checkpointed container's delete has run to its end
            group = cgroups.Cgroup(source.runtime_id)
            assert group.pids(), "the restored sandbox's processes are in the group its handle names"
            assert _memory_limit(group) >= 256 << 20, "and its memory limit holds there"
            names = {rel.rsplit("/", 1)[1] for rel in _groups_of(source.sandbox_id)}
            assert names == {source.runtime_id.rsplit("/", 1)[1]}, names  # no group of before is left
            async with agent(source) as client:
                assert await ask_counter(client) == str(1 + round_)  # the same process, on from its memory
        # A worker that starts again reaps what no sandbox it knows uses: the restored group is
        # the source's; the control is the make_runtime fixture's reap of everything at the end.
        assert await gvisor.reap({source.sandbox_id}) == [] and await gvisor.alive(source)
        async with agent(source) as client:
            assert await ask_counter(client) == "4"
        await gvisor.destroy(source)
        destroyed = True
        assert _groups_of(source.sandbox_id) == []
        await gvisor._settle()  # the last checkpointed container's delete, had it not run to its end yet
        assert cgroups.owner_dirs(gvisor.owner_key) == []
    finally:
        if not destroyed:
            await gvisor.destroy(source)


async def test_a_released_sandbox_is_killed_at_once_and_its_remains_go_behind_the_call(gvisor, new_spec, monkeypatch):
    """``release`` (a delete's, a restore's old state) kills every process of the sandbox before
    it returns; runsc's delete, the group and the directory go in the background, and a create of
    the same id waits for them, as does ``_settle`` (close, reap)."""
    spec = new_spec(image="python:3.11")
    handle = await gvisor.create(spec)
    members = cgroups.Cgroup(handle.runtime_id).pids()
    assert len(members) >= 2  # control: the sentry and the gofer (and the sentry's stubs) are in its group
    removing, events = asyncio.Event(), []
    real_destroy, real_runsc = gvisor.destroy, gvisor._runsc

    async def held_destroy(h):
        await removing.wait()
        await real_destroy(h)
        events.append("removed")

    async def seen_runsc(s, *args, **kw):
        events.append(f"runsc {args[0]}")
        return await real_runsc(s, *args, **kw)

    monkeypatch.setattr(gvisor, "destroy", held_destroy)
    monkeypatch.setattr(gvisor, "_runsc", seen_runsc)
    await gvisor.release(handle)
    assert all(_dead(pid) for pid in members), [(pid, _state(pid)) for pid in members]
    assert Path(handle.run_dir).parent.is_dir()  # not yet removed: that is held above
    again = asyncio.create_task(gvisor.create(spec))  # the same id
    await asyncio.sleep(0.5)
    assert not again.done() and events == []  # it waits for the removal
    removing.set()
    second = await again
    try:
        ours = next(i for i, e in enumerate(events) if e not in ("runsc delete", "removed"))
        assert events.index("removed") < ours, events  # the old one's removal ran to its end first
        assert await gvisor.alive(second)
    finally:
        await gvisor.release(second)
    await gvisor._settle()
    assert not Path(second.run_dir).parent.exists() and _groups_of(spec.sandbox_id) == []
    assert (await real_runsc(spec, "list", "--quiet", check=False)).split() == []
    # nor the owner's directory, in any hierarchy (runsc makes it in those ROCK sets nothing in too)
    assert [str(d) for root in cgroups.hierarchies() for d in root.glob(f"rock/{gvisor.owner_key}")] == []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def _dead(pid: int) -> bool:
    """Killed: gone, or a zombie that its parent has not reaped yet (a signal already sent may
    take a moment to land on a busy machine)."""
    deadline = time.monotonic() + 10
    while _state(pid) not in ("gone", "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.01)
    return _state(pid) in ("gone", "Z", "X")


async def test_root_inside_can_neither_raise_nor_leave_its_pids_limit(gvisor, new_spec, sandboxes, agent):  # noqa: F811
    # The limit lives in the sentry's pids cgroup, shown read-only at /sys/fs/cgroup (rock.runtime.gvisor.pids).
    # The spec's variables cannot name the limit the agent sets (rock.runtime.agent_boot.AGENT_ONLY_ENV).
    handle = await sandboxes(gvisor, new_spec(pids_limit=64, env={"ROCK_AGENT_PIDS_LIMIT": "100000", "MINE": "1"}))
    async with agent(handle) as client:
        tried = await client.exec("echo 100000 > /sys/fs/cgroup/sandbox/pids.max; echo $$ > /sys/fs/cgroup/cgroup.procs; "
                                  "cat /proc/self/cgroup", shell=True)
        # The agent set the limit with CAP_SYS_ADMIN and CAP_SETPCAP (rock_agent.pids) and gave both
        # up before it was ready: neither it nor a command holds them in any set, nor can get them back.
        caps = await client.exec("grep -H '^Cap' /proc/1/status /proc/self/status", shell=True)
        env = await client.exec("env", shell=True)
        unmount = await client.exec("umount /sys/fs/cgroup", shell=True)
        remount = await client.exec("mkdir -p /tmp/pids && mount -t cgroup -o pids cgroup /tmp/pids", shell=True)
        again = await client.exec("cat /proc/self/cgroup /sys/fs/cgroup/sandbox/pids.max", shell=True)
    assert tried.stdout == "1:pids:/sandbox\n"
    assert tried.stderr.count("Read-only file system") == 2, tried
    sets = [line.split(":") for line in caps.stdout.splitlines()]
    assert {(path, name) for path, name, _ in sets} >= {(p, n) for p in ("/proc/1/status", "/proc/self/status")
                                                         for n in ("CapInh", "CapPrm", "CapEff", "CapBnd")}, caps
    held = [(path, name) for path, name, bits in sets if int(bits, 16) & (1 << 21 | 1 << 8)]
    assert held == [], caps
    assert any(int(bits, 16) & 1 << 0 for _, name, bits in sets if name == "CapEff"), caps  # control: CAP_CHOWN kept
    assert "ROCK_AGENT_PIDS_LIMIT" not in env.stdout and "MINE=1" in env.stdout  # control: the spec's others
    assert unmount.exit_code != 0 and remount.exit_code != 0, (unmount, remount)
    assert again.stdout == "1:pids:/sandbox\n64\n", again
    stats = await gvisor.stats(handle)
    assert stats.pids_limit == 64 and 0 < stats.pids < 64


async def test_the_agent_offers_no_memory_to_ksm_under_gvisor(gvisor, new_spec, sandboxes, agent):  # noqa: F811
    """The sentry ignores MADV_MERGEABLE, so a gVisor sandbox's agent is told not to offer its memory
    (no thread, no module, no walk of its pages for nothing), though the setting is on."""
    assert gvisor.settings.merge_agent_memory  # control: the other backends' agents offer theirs
    handle = await sandboxes(gvisor, new_spec())
    async with agent(handle) as client:
        told = await client.exec("echo merge=$ROCK_AGENT_MERGE_MEMORY", shell=True)
    assert told.stdout == "merge=0\n", told


FORK_PROBE = ("import os, time\nkids = []\ntry:\n    for _ in range(500):\n        pid = os.fork()\n"
              "        if pid == 0:\n            time.sleep(60); os._exit(0)\n        kids.append(pid)\n"
              "except OSError as exc:\n    print('refused', exc.errno)\nprint('forked', len(kids))\n"
              "for pid in kids: os.kill(pid, 9); os.waitpid(pid, 0)\n")


async def test_a_full_forks_children_and_restored_source_keep_the_pids_limit(gvisor, new_spec, sandboxes,
                                                                              agent):  # noqa: F811
    # A restore brings the sentry's pids group back with its limit and tasks (no setup is run again).
    parent = await sandboxes(gvisor, new_spec(pids_limit=64))
    snap, children = await gvisor.fork(parent, 1, owner="alice", mode="full")
    try:
        for handle in (parent, *children):
            async with agent(handle) as client:
                probe = await client.exec(["sh", "-c", 'exec "$ROCK_HOST_PYTHON" -c "$0"', FORK_PROBE], timeout=60)
                shown = await client.exec("cat /proc/self/cgroup /sys/fs/cgroup/sandbox/pids.max", shell=True)
            assert "refused 11" in probe.stdout, probe  # EAGAIN
            assert 0 < int(probe.stdout.split("forked ")[1].split()[0]) < 64, probe
            assert shown.stdout == "1:pids:/sandbox\n64\n", shown
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)


async def test_the_memory_limit_kills_the_biggest_process_in_a_sandbox_and_its_full_fork(gvisor, new_spec, sandboxes,
                                                                                        agent):  # noqa: F811
    # The spec's variables cannot raise the limit the agent keeps (the backend's wins).
    parent = await sandboxes(gvisor, new_spec(memory_bytes=64 << 20, env={"ROCK_AGENT_MEMORY_LIMIT": str(1 << 40)}))
    snap, children = await gvisor.fork(parent, 1, owner="alice", mode="full")
    try:
        for handle in (parent, *children):  # the parent restored from its own checkpoint, and the child
            async with agent(handle) as client:
                hog = await client.exec(MEMORY_HOG, shell=True, timeout=60)
                assert hog.exit_code in (137, -9) and not hog.timed_out, hog
                assert (await client.exec("echo still usable", shell=True)).stdout == "still usable\n"
            logged = (Path(handle.run_dir).parent / "sandbox.log").read_text()
            assert "rock agent: out of memory" in logged and "(tail)" in logged, logged[-2000:]
            assert await gvisor.alive(handle)
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)


async def test_an_admin_without_runsc_is_told_why(monkeypatch):
    from rock.runtime.gvisor import runtime as gvisor

    monkeypatch.setattr(gvisor.shutil, "which", lambda name: None)
    assert "runsc" in gvisor.GvisorRuntime.available()


async def test_a_boot_that_dies_says_why(gvisor, new_spec, tmp_path):
    """runsc's own caller sees only "cannot read client sync file: EOF" when the sandbox's boot
    dies; the cause (here a bind source that is gone) is in the boot's and gofer's logs, and the
    error carries it so an operator need not rerun with --debug."""
    gone = tmp_path / "gone-before-boot"
    spec = new_spec(image="python:3.11", ro_binds=[str(gone)])
    with pytest.raises(SandboxStartError) as failed:
        handle = await gvisor.create(spec)
        await gvisor.destroy(handle)  # not reached: the boot fails
    said = str(failed.value)
    assert "client sync file" in said  # the caller's view, as before
    assert "runsc's sandbox said" in said and str(gone) in said, said  # and the boot's own reason


async def test_ls_and_stat_of_a_named_path_work_in_a_sandbox_and_its_full_fork_children(gvisor, new_spec, sandboxes,
                                                                                        agent):  # noqa: F811
    """coreutils 9 stats with AT_NO_AUTOMOUNT, which this runsc refused with EINVAL (rock.runtime.gvisor.statx)."""
    from pathlib import Path

    listing = 'ls /root && ls -l /root/listed && stat -c %s /root/listed && ls -d /tmp'
    parent = await sandboxes(gvisor, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        await client.exec('echo x > "$HOME/listed"', shell=True)
        shown = await client.exec(listing, shell=True)
        assert shown.exit_code == 0 and "listed" in shown.stdout and "\n2\n" in shown.stdout, shown
    # The shim is bound over the preload list, nothing of it written into the sandbox's own files.
    assert not (Path(parent.run_dir).parent / "upper" / "etc" / "ld.so.preload").exists()
    snap, children = await gvisor.fork(parent, 2, owner="alice", mode="full")
    try:
        for child in children:
            async with agent(child) as client:
                shown = await client.exec(listing, shell=True)
                assert shown.exit_code == 0 and "listed" in shown.stdout, shown
                assert "listed" in [e["name"] for e in await client.list_dir("/root")]
        async with agent(parent) as client:
            assert (await client.exec(listing, shell=True)).exit_code == 0
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)


async def test_a_full_fork_continues_a_running_env_host_mid_episode(gvisor, new_spec, sandboxes, agent):  # noqa: F811
    """The env host's own socket is closed for the checkpoint and bound again in each sandbox
    (rock_agent.checkpoint.env_hosts): before, ``runsc checkpoint`` failed on it."""
    import json

    async def step(client, env, guess):
        return json.loads((await client.call("env.step", {"env": env, "action": f"\\boxed{{{guess}}}"}))[1])

    parent = await sandboxes(gvisor, new_spec())
    async with agent(parent) as client:
        made, _ = await client.call("env.make", {"env_id": "game:GuessTheNumber-v0-hard", "reset": 7})
        first = await step(client, made["env"], 25)
    snap, children = await gvisor.fork(parent, 2, owner="alice", mode="full")
    try:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(agent(c)) for c in (parent, *children)]
            # Every copy is at the same turn of the same game: the same guess gets the same answer.
            same = [await step(c, made["env"], 10) for c in clients]
            assert same[0] == same[1] == same[2] and same[0]["observation"] != first["observation"]
            low, high = await step(clients[1], made["env"], 1), await step(clients[2], made["env"], 50)
            assert low["observation"] != high["observation"]
            listed = [(await c.call("env.list", {}))[0]["envs"] for c in clients]
            assert all(e[0]["steps"] == s for e, s in zip(listed, (2, 3, 3))), listed
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)


async def test_a_fresh_sandbox_starts_the_images_python3_directly_and_one_over_a_snapshot_looks_it_up(
        gvisor, new_spec, sandboxes, agent):  # noqa: F811
    """A fresh sandbox's root is its image's: the runtime finds python3 there and starts the agent
    with it, no shell first (an exec under runsc costs ~50 ms). Over a snapshot's layers the shell
    looks it up inside, as they may put another first on PATH: here one that leaves a mark."""
    parent = await sandboxes(gvisor, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        argv0 = (await client.exec("tr '\\0' '\\n' < /proc/1/cmdline | head -1", shell=True)).stdout.strip()
        # The image's, by the absolute path found on the host (a shell's `exec python3` says "python3").
        assert argv0.startswith("/") and argv0.endswith("/python3"), argv0
        put = ("d=${PATH%%:*}; mkdir -p $d && printf '%s\\n' '#!/bin/sh' 'echo by-the-layer > /tmp/wrapped' "
               "'exec " + argv0 + " \"$@\"' > $d/python3 && chmod +x $d/python3 && command -v python3")
        made = await client.exec(put, shell=True)
        assert made.stdout.strip() != argv0, made  # first on PATH now
    snap, children = await gvisor.fork(parent, 1, owner="alice")
    try:
        async with agent(children[0]) as client:
            assert (await client.exec("cat /tmp/wrapped", shell=True)).stdout == "by-the-layer\n"
    finally:
        for child in children:
            await gvisor.destroy(child)
        await gvisor.delete_snapshot(snap)


async def test_a_start_logs_its_sandbox_and_where_its_time_went(gvisor, new_spec, agent, caplog):  # noqa: F811
    """An operator reading a slow start sees which phase was slow: our setup, runsc's boot (run,
    or restore for a start from a full snapshot) and the agent's own start inside, with the
    sandbox's id and its runsc pid; as the bwrap and docker backends say theirs."""
    caplog.set_level(logging.INFO, logger="rock.runtime.gvisor")
    source = await gvisor.create(new_spec(image="python:3.11"))
    try:
        async with agent(source) as client:
            await start_counter(client)
        snap = await gvisor.snapshot(source, f"full-{uuid.uuid4().hex[:8]}", owner="alice", mode="full")
    finally:
        await gvisor.destroy(source)
    try:
        started = await gvisor.start_from(snap)
        await gvisor.destroy(started)
    finally:
        await gvisor.delete_snapshot(snap)
    phases = re.compile(r"sandbox (\S+) ready in ([\d.]+) ms \(setup ([\d.]+) ms, runsc (run|restore) ([\d.]+) ms, "
                        r"agent ([\d.]+) ms, pid (\d+)\)")
    seen = {}
    for rec in caplog.records:
        found = phases.fullmatch(rec.getMessage())
        if found:
            seen[found[1]] = found
    assert set(seen) >= {source.sandbox_id, started.sandbox_id}, [r.getMessage() for r in caplog.records]
    for sid, how in ((source.sandbox_id, "run"), (started.sandbox_id, "restore")):
        found = seen[sid]
        total, parts = float(found[2]), [float(found[i]) for i in (3, 5, 6)]
        assert found[4] == how and int(found[7]) > 1
        assert all(p >= 0 for p in parts) and sum(parts) <= total + 0.5, found.group(0)  # rounding
        assert float(found[5]) > 0 and float(found[6]) > 0, found.group(0)
