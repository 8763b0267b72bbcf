"""Pause / resume, snapshots and fork at the runtime level, on every backend.

Files go under ``$HOME``: the local backend's sandbox has no root of its own, its HOME is its
private work directory (what its snapshots keep); on the others HOME is /root, in the writable layer.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from rock.errors import BadRequest, Conflict, SandboxPaused, SnapshotNotFound
from rock.runtime.base import RuntimeHandle

# A process holding a counter in memory: each SIGUSR1 adds one and writes the count to a file.
COUNTER = (
    "import os, signal\n"
    "home = os.path.expanduser('~')\n"
    "n = 0\n"
    "def bump(*_):\n"
    "    global n\n"
    "    n += 1\n"
    "    with open(home + '/count.tmp', 'w') as out:\n"
    "        out.write(str(n))\n"
    "    os.replace(home + '/count.tmp', home + '/count')\n"
    "signal.signal(signal.SIGUSR1, bump)\n"
    "with open(home + '/counter.tmp', 'w') as out:\n"
    "    out.write(str(os.getpid()))\n"
    "os.replace(home + '/counter.tmp', home + '/counter.pid')\n"
    "while True:\n"
    "    signal.pause()\n"
)
PY = '"$ROCK_HOST_PYTHON"'
# Signal the counter and wait (a deadline, in the sandbox) until the count file changes.
ASK = ('before=$(cat "$HOME/count" 2>/dev/null || echo 0); kill -USR1 "$(cat "$HOME/counter.pid")"; i=0; '
       'while [ "$(cat "$HOME/count" 2>/dev/null || echo 0)" = "$before" ] && [ $i -lt 3000 ]; do '
       'i=$((i+1)); sleep 0.01; done; cat "$HOME/count"')


async def start_counter(client) -> None:
    await client.exec('rm -f "$HOME/count" "$HOME/counter.pid"', shell=True)
    await client.proc_start(["sh", "-c", f'exec {PY} -c "$0"', COUNTER])
    started = await client.exec('i=0; while [ ! -s "$HOME/counter.pid" ] && [ $i -lt 3000 ]; do i=$((i+1)); '
                                'sleep 0.01; done; cat "$HOME/counter.pid"', shell=True, timeout=60)
    assert started.stdout.strip().isdigit(), started


async def ask_counter(client) -> str:
    """One more count from the counter process: what it holds in memory, plus one."""
    return (await client.exec(ASK, shell=True, timeout=60)).stdout.strip()


@pytest.fixture
def agent():
    """``async with agent(handle) as client``: connected as the worker connects, with the sandbox's
    handle, so that a paused sandbox refuses at once (the shared fixture connects by path only)."""

    @asynccontextmanager
    async def connect(handle: RuntimeHandle):
        from rock.worker.agent_client import AgentClient

        client = await AgentClient.connect(handle.socket_path, handle)
        try:
            yield client
        finally:
            client.close()

    return connect


async def cpu_used(runtime, handle, seconds: float) -> float:
    """CPU seconds the sandbox's cgroup used over a window of ``seconds``."""
    before = (await runtime.stats(handle)).cpu_seconds
    await asyncio.sleep(seconds)  # a measuring window, not a wait for an event
    return (await runtime.stats(handle)).cpu_seconds - before


async def test_a_paused_sandbox_uses_no_cpu_refuses_commands_and_resumes(runtime, new_spec, sandboxes, agent):
    # A memory limit: on gVisor the agent's memory watcher (rock_agent.oom) runs, and pauses too.
    handle = await sandboxes(runtime, new_spec(image="python:3.11", memory_bytes=256 << 20))
    async with agent(handle) as client:
        await client.proc_start(["sh", "-c", "while :; do :; done"])
        await start_counter(client)
        assert await ask_counter(client) == "1"
        running = await cpu_used(runtime, handle, 1.0)
        assert running > 0.1  # the control: the loop burns CPU while running (a busy machine gives it less)
        await runtime.pause(handle)
        assert runtime.paused(handle)
        assert await cpu_used(runtime, handle, 1.0) < min(0.02, running / 10)
        with pytest.raises(SandboxPaused, match="paused"):
            await client.exec("echo hi", shell=True)
        with pytest.raises(SandboxPaused):  # a new connection too
            async with agent(handle):
                pass
        await runtime.unpause(handle)
        assert not runtime.paused(handle)
        assert (await client.exec("echo hi", shell=True)).stdout == "hi\n"
        assert await ask_counter(client) == "2"  # its memory was kept
        assert await cpu_used(runtime, handle, 1.0) > 0.1


async def test_a_paused_sandbox_survives_a_new_runtime_on_the_same_state(runtime, make_runtime, new_spec, agent):
    handle = await runtime.create(new_spec(image="python:3.11"))
    again = None
    try:
        async with agent(handle) as client:
            await start_counter(client)
            assert await ask_counter(client) == "1"
        await runtime.pause(handle)
        # What a restarted worker has: the handle from its record, a runtime object of its own.
        record = RuntimeHandle.model_validate_json(handle.model_dump_json())
        again = type(runtime)(runtime.settings, runtime.owner)
        assert again.paused(record) and await again.alive(record)
        assert await again.reap({handle.sandbox_id}) == []
        with pytest.raises(SandboxPaused):
            async with agent(record):
                pass
        await again.unpause(record)
        async with agent(record) as client:
            assert await ask_counter(client) == "2"
    finally:
        await (again or runtime).destroy(handle)
        if again is not None:
            await again.close()


async def test_a_paused_sandbox_can_be_deleted(runtime, new_spec, agent):
    handle = await runtime.create(new_spec())
    await runtime.pause(handle)
    await runtime.destroy(handle)
    assert not await runtime.alive(handle)


# Four threads starting /bin/true in a loop (posix_spawn: a vfork), each thread counting its
# children into $HOME/spawned.<n>: most of the time some thread is in the kernel starting a child.
SPAWNER = (
    "import os, threading\n"
    "home = os.path.expanduser('~')\n"
    "def spin(k):\n"
    "    n = 0\n"
    "    while True:\n"
    "        os.waitpid(os.posix_spawn('/bin/true', ['true'], dict(os.environ)), 0)\n"
    "        n += 1\n"
    "        if n % 50 == 0:\n"
    "            with open(f'{home}/spawned.{k}.tmp', 'w') as out:\n"
    "                out.write(f'{n}\\n')\n"
    "            os.replace(f'{home}/spawned.{k}.tmp', f'{home}/spawned.{k}')\n"
    "for k in range(4):\n"
    "    threading.Thread(target=spin, args=(k,)).start()\n"
)
SPAWNED = 'cat "$HOME"/spawned.* 2>/dev/null | awk "{s+=\\$1} END {print s+0}"'


async def spawned_past(client, n: int) -> int:
    """The threads' count of children once it is past ``n`` (a deadline, in the sandbox)."""
    counted = await client.exec(f'i=0; while [ "$({SPAWNED})" -le {n} ] && [ $i -lt 3000 ]; do i=$((i+1)); '
                                f'sleep 0.01; done; {SPAWNED}', shell=True, timeout=60)
    return int(counted.stdout)


@pytest.mark.parametrize("backend", [pytest.param("bwrap", marks=pytest.mark.bwrap), "local"])
async def test_a_sandbox_starting_processes_all_the_time_pauses_every_time(backend, make_runtime, new_spec, sandboxes,
                                                                          agent):
    # On cgroup v1 the freezer asks each task once: a thread caught in the kernel starting a vfork
    # child then sleeps in a wait no such ask ends, and the group stayed FREEZING until pause gave
    # up (10 s): about one pause in ten of this sandbox did, and a start's own spare bash once in CI.
    runtime = make_runtime(backend)
    handle = await sandboxes(runtime, new_spec(image="python:3.11" if backend == "bwrap" else None))
    async with agent(handle) as client:
        await client.exec('rm -f "$HOME"/spawned.*', shell=True)
        await client.proc_start(["sh", "-c", f'exec {PY} -c "$0"', SPAWNER])
        before = await spawned_past(client, 199)
        assert before >= 200, before  # the control: the threads are starting children
    for _ in range(60):
        await runtime.pause(handle)
        assert runtime.paused(handle)
        await runtime.unpause(handle)
    async with agent(handle) as client:  # and they went on after the last thaw
        after = await spawned_past(client, before)
        assert after > before, (before, after)


async def test_a_filesystem_snapshot_is_owned_outlives_its_source_and_starts_sandboxes(runtime, new_spec, sandboxes,
                                                                                        agent):
    name = f"snap-{uuid.uuid4().hex[:8]}"
    source = await runtime.create(new_spec(image="python:3.11"))
    try:
        async with agent(source) as client:
            await client.exec('echo before > "$HOME/kept"', shell=True)
            snap = await runtime.snapshot(source, name, owner="alice")
            assert (await client.exec('echo after > "$HOME/later"; cat "$HOME/kept"', shell=True)).stdout == "before\n"
    finally:
        await runtime.destroy(source)
    try:
        assert snap.mode == "filesystem" and snap.source == source.sandbox_id
        assert runtime.snapshots.get(name, "alice").name == name
        with pytest.raises(SnapshotNotFound):
            runtime.snapshots.get(name, "bob")  # another owner's is as good as absent
        assert [s.name for s in runtime.snapshots.list("bob")] == []
        with pytest.raises(Conflict):
            await runtime.snapshot(await sandboxes(runtime, new_spec()), name, owner="bob")
        child = await sandboxes(runtime, runtime.snapshots.get(name, "alice").spec.model_copy(
            update={"sandbox_id": f"c{uuid.uuid4().hex[:10]}"}))  # a plain start: no files of the snapshot
        async with agent(child) as client:
            assert (await client.exec('cat "$HOME/kept" 2>/dev/null || echo absent', shell=True)).stdout == "absent\n"
        for _ in range(2):
            started = await runtime.start_from(snap)
            try:
                async with agent(started) as client:
                    got = await client.exec('cat "$HOME/kept"; test -e "$HOME/later" && echo later || echo no-later',
                                            shell=True)
                assert got.stdout == "before\nno-later\n"
            finally:
                await runtime.destroy(started)
    finally:
        await runtime.delete_snapshot(snap)
    with pytest.raises(SnapshotNotFound):
        runtime.snapshots.get(name, "alice")


async def test_a_delete_racing_starts_from_the_snapshot_never_breaks_a_start(runtime, new_spec, sandboxes, agent):
    """Starts and a delete of one snapshot at the same instant (as two clients of the admin may
    send them): each start either runs with the snapshot's files or is SnapshotNotFound, never a
    start from half-removed files; and the snapshot is gone afterwards."""
    source = await sandboxes(runtime, new_spec(image="python:3.11"))
    async with agent(source) as client:
        await client.exec('echo kept > "$HOME/kept"', shell=True)
    outcomes = {"started": 0, "not_found": 0}
    for attempt in range(3):
        snap = await runtime.snapshot(source, f"race-{uuid.uuid4().hex[:8]}", owner="alice")
        # the delete goes first on the loop in the last attempt, last in the others
        calls = [runtime.start_from(snap), runtime.start_from(snap)]
        at = 0 if attempt == 2 else 2
        calls.insert(at, runtime.delete_snapshot(snap))
        results = await asyncio.gather(*calls, return_exceptions=True)
        deleted = results.pop(at)
        for result in results:
            if isinstance(result, RuntimeHandle):
                try:
                    async with agent(result) as client:
                        assert (await client.exec('cat "$HOME/kept"', shell=True)).stdout == "kept\n"
                finally:
                    await runtime.destroy(result)
                outcomes["started"] += 1
            else:
                assert isinstance(result, SnapshotNotFound), repr(result)
                outcomes["not_found"] += 1
        if isinstance(deleted, Conflict):
            # docker: the snapshot is an engine image its children ran on; the refused delete
            # left it whole, and with the children gone it deletes
            assert runtime.name == "docker" and attempt < 2, repr(deleted)
            assert runtime.snapshots.get(snap.name, "alice").name == snap.name
            await runtime.delete_snapshot(snap)
        else:
            assert deleted is None, repr(deleted)
        with pytest.raises(SnapshotNotFound):
            runtime.snapshots.get(snap.name, "alice")
        assert not runtime.snapshots.path(snap.name).exists()
    assert outcomes == {"started": 4, "not_found": 2}, outcomes


async def test_fork_children_start_alike_and_then_differ(runtime, new_spec, sandboxes, agent):
    parent = await sandboxes(runtime, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        await client.exec('echo parent > "$HOME/shared"', shell=True)
    snap, children = await runtime.fork(parent, 3, owner="alice")
    try:
        assert len({c.sandbox_id for c in children}) == 3
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(agent(child)) for child in children]
            for client in clients:
                assert (await client.exec('cat "$HOME/shared"', shell=True)).stdout == "parent\n"
            await clients[0].exec('echo mine > "$HOME/only-first"', shell=True)
            seen = [(await c.exec('test -e "$HOME/only-first" && echo yes || echo no', shell=True)).stdout
                    for c in clients]
            assert seen == ["yes\n", "no\n", "no\n"]
            async with agent(parent) as client:
                assert (await client.exec('test -e "$HOME/only-first" && echo yes || echo no', shell=True)).stdout == "no\n"
    finally:
        for child in children:
            await runtime.destroy(child)
        await runtime.delete_snapshot(snap)


async def test_fork_children_change_inherited_files_alone_outlive_the_snapshot_and_fork_on(runtime, new_spec, sandboxes,
                                                                                           agent):
    """A child's change to a file it got from the snapshot (appended in place, removed) is its own:
    its sibling, the parent and the snapshot keep theirs; the children's files survive the
    snapshot's deletion; a snapshot of a child carries both generations' changes to its children."""
    parent = await sandboxes(runtime, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        await client.exec('echo parent > "$HOME/shared"; echo x > "$HOME/gone"', shell=True)
    snap, children = await runtime.fork(parent, 2, owner="alice")
    try:
        async with agent(children[0]) as first, agent(children[1]) as second:
            await first.exec('echo first >> "$HOME/shared"; rm "$HOME/gone"', shell=True)
            look = 'cat "$HOME/shared"; test -e "$HOME/gone" && echo gone-there || echo gone-absent'
            assert (await first.exec(look, shell=True)).stdout == "parent\nfirst\ngone-absent\n"
            assert (await second.exec(look, shell=True)).stdout == "parent\ngone-there\n"
            async with agent(parent) as client:
                assert (await client.exec(look, shell=True)).stdout == "parent\ngone-there\n"
            later = await runtime.start_from(snap)
            try:
                async with agent(later) as client:
                    assert (await client.exec(look, shell=True)).stdout == "parent\ngone-there\n"
            finally:
                await runtime.destroy(later)
            if runtime.name == "docker":  # the engine keeps an image its containers run from
                with pytest.raises(Conflict):
                    await runtime.delete_snapshot(snap)
            else:
                await runtime.delete_snapshot(snap)
                snap = None
            assert (await second.exec(look, shell=True)).stdout == "parent\ngone-there\n"
            grand_snap, grandchildren = await runtime.fork(children[0], 1, owner="alice")
            try:
                async with agent(grandchildren[0]) as client:
                    assert (await client.exec(look, shell=True)).stdout == "parent\nfirst\ngone-absent\n"
            finally:
                await runtime.destroy(grandchildren[0])
                await runtime.delete_snapshot(grand_snap)
    finally:
        for child in children:
            await runtime.destroy(child)
        if snap is not None:
            await runtime.delete_snapshot(snap)


async def test_full_snapshots_are_refused_where_the_backend_cannot_keep_memory(runtime, new_spec, sandboxes):
    if runtime.full_snapshots:
        pytest.skip(f"{runtime.name} takes full snapshots (tests/runtime/test_gvisor.py)")
    handle = await sandboxes(runtime, new_spec())
    with pytest.raises(BadRequest, match="full"):
        await runtime.snapshot(handle, f"s{uuid.uuid4().hex[:8]}", owner="alice", mode="full")
    assert runtime.snapshots.list("alice") == []


async def test_files_under_tmp_are_in_a_filesystem_snapshot_and_a_fork(isolated_runtime, new_spec, sandboxes, agent):
    """/tmp is part of the writable layer on every backend with a root of its own (gVisor's own
    in-memory /tmp is replaced by the layer's: rock.runtime.gvisor)."""
    runtime = isolated_runtime
    parent = await sandboxes(runtime, new_spec(image="python:3.11"))
    async with agent(parent) as client:
        await client.exec("mkdir -p /tmp/work && echo kept > /tmp/work/file", shell=True)
    snap = await runtime.snapshot(parent, f"tmp-{uuid.uuid4().hex[:8]}", owner="alice")
    fork_snap, children = await runtime.fork(parent, 2, owner="alice")
    try:
        started = await runtime.start_from(snap)
        try:
            for handle in (started, *children):
                async with agent(handle) as client:
                    assert (await client.exec("cat /tmp/work/file", shell=True)).stdout == "kept\n"
            async with agent(children[0]) as client:
                await client.exec("echo mine > /tmp/only-first", shell=True)
            async with agent(children[1]) as client:
                assert (await client.exec("test -e /tmp/only-first && echo yes || echo no", shell=True)).stdout == "no\n"
        finally:
            await runtime.destroy(started)
    finally:
        for child in children:
            await runtime.destroy(child)
        await runtime.delete_snapshot(fork_snap)
        await runtime.delete_snapshot(snap)
