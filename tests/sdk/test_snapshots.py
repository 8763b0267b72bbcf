"""Pause, resume, snapshots and fork through the SDK and ROCK's HTTP API, once per backend (the
session's admin: docker and bwrap): a real admin, real sandboxes, no stand-ins."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from rock.actions import CreateBashSessionRequest
from rock.errors import BadRequest, Conflict, SandboxPaused, SnapshotNotFound
from rock.sdk.sandbox import Sandbox, Snapshot, SyncSandbox
from tests.sdk.test_sandbox import box, config, until  # noqa: F401 - box: a fixture

PREFIX = "/apis/envs/sandbox/v1"


async def out(sandbox: Sandbox, cmd: str) -> str:
    return (await sandbox.arun(cmd)).output.strip()


async def sleeper(sandbox: Sandbox) -> str:
    """A process that outlives the command that started it (in a session of its own); its pid."""
    await sandbox.create_session(CreateBashSessionRequest(session="bg"))
    await sandbox.arun("sleep 1000 > /dev/null 2>&1 & echo $! > /root/sleeper.pid", session="bg")
    return await out(sandbox, "cat /root/sleeper.pid")


async def test_pause_refuses_calls_with_409_and_resume_brings_the_same_processes_back(admin, box):
    pid = await sleeper(box)
    await box.pause()
    status = await box.get_status()
    assert status.lifecycle_state == "paused" and not status.is_alive
    with pytest.raises(SandboxPaused, match="is paused: resume it first"):
        await box.arun("echo refused")
    # the same refusal over plain HTTP: a 409 with the message, nothing run
    r = httpx.post(admin.url + PREFIX + "/execute", json={"sandbox_id": box.sandbox_id, "command": "touch /root/ran"})
    assert r.status_code == 409 and "is paused" in r.json()["message"]
    await box.pause()  # idempotent
    await box.resume()
    assert (await box.get_status()).lifecycle_state == "running"
    assert await out(box, f"cat /proc/{pid}/cmdline | tr '\\0' ' '") == "sleep 1000"  # the process was kept
    assert (await out(box, "ls /root/ran 2>/dev/null || echo absent")) == "absent"  # the refused call never ran
    await box.resume()  # idempotent
    events = [h.event for h in (await box.get_status()).state_history]
    assert events[-2:] == ["pause", "resume"]


async def test_a_file_written_in_one_child_of_a_fork_is_absent_in_the_others_and_the_parent(admin, box):
    await box.write_bytes("/root/before.txt", b"from the parent")
    children = await box.fork(3)
    try:
        assert len(children) == 3 and len({c.sandbox_id for c in children} | {box.sandbox_id}) == 4
        for child in children:
            assert await child.read_bytes("/root/before.txt") == b"from the parent"
            assert (await child.get_status()).lifecycle_state == "running"
        await children[0].write_bytes("/root/mine.txt", b"only in child 0")
        for other in (*children[1:], box):
            assert await out(other, "cat /root/mine.txt 2>/dev/null || echo absent") == "absent"
        assert await children[0].read_bytes("/root/mine.txt") == b"only in child 0"  # the control
        if admin.backend == "bwrap":  # the children have their own copies: the fork's snapshot went
            assert [s for s in await box.list_snapshots() if s.source.startswith(box.sandbox_id[:8])] == []
    finally:
        for child in children:
            await child.delete()
            await child.aclose()

    async def fork_snapshot_gone():  # docker kept it for its children's image; it goes with the last of them
        return not [s for s in await box.list_snapshots() if s.source.startswith(box.sandbox_id[:8])]

    await until(fork_snapshot_gone, timeout=60)


async def _drop_fork_snapshots(sandbox: Sandbox) -> None:
    """What is left of this sandbox's forks' snapshots (docker keeps one for its children's image,
    and drops it after the last of them: this does not wait for that)."""
    for snap in await sandbox.list_snapshots():
        if snap.source.startswith(sandbox.sandbox_id[:8]):
            try:
                await sandbox.delete_snapshot(snap.name)
            except SnapshotNotFound:  # it went with the last child meanwhile
                pass


async def test_a_snapshot_is_owned_listed_outlives_its_source_and_starts_sandboxes(admin):
    source = Sandbox(config(admin))
    await source.start()
    name = f"base-{uuid.uuid4().hex[:8]}"
    try:
        await source.write_bytes("/root/state.txt", b"at the snapshot")
        snap = await source.snapshot(name=name)
        assert isinstance(snap, Snapshot) and snap.name == name and snap.mode == "filesystem"
        assert snap.backend == admin.backend and snap.took_ms is not None
        await source.write_bytes("/root/state.txt", b"after the snapshot")
        with pytest.raises(Conflict, match="exists already"):
            await source.snapshot(name=name)
    finally:
        await source.delete()
        await source.aclose()
    assert name in [s.name for s in await source.list_snapshots()]  # its source is gone, it is not
    again = Sandbox(config(admin, snapshot=name))
    await again.start()
    try:
        assert await again.read_bytes("/root/state.txt") == b"at the snapshot"
        await again.write_bytes("/root/state.txt", b"its own")
        third = Sandbox(config(admin, snapshot=name))
        await third.start()
        assert await third.read_bytes("/root/state.txt") == b"at the snapshot"  # writes stay each sandbox's
        await third.delete()
        await third.aclose()
    finally:
        await again.delete()
        await again.aclose()
    await source.delete_snapshot(name)
    assert name not in [s.name for s in await source.list_snapshots()]
    with pytest.raises(SnapshotNotFound):
        await source.get_snapshot(name)
    with pytest.raises(SnapshotNotFound):
        await Sandbox(config(admin, snapshot=name)).start()


def test_starts_from_a_snapshot_racing_its_delete_either_run_or_are_a_404(admin):
    """Two clients at once: one starts sandboxes from a snapshot (waiting for them, as the UI's and
    e2b's starts do), the other deletes it while a start is taking the snapshot's files. A start
    that began first runs with those files; one after the delete is SnapshotNotFound (a 404),
    never a 503 from half-removed files."""
    from rock.actions.sandbox import SandboxStartRequest

    svc = admin.ctx.sandboxes
    store = svc.worker.runtime.snapshots

    def shell(sid: str, command: str) -> str:
        async def run():
            return (await (await svc.agent(sid, None)).exec(command, shell=True)).stdout
        return admin.call(run)

    source = admin.call(lambda: svc.start(SandboxStartRequest(image="python:3.11", memory="256m", cpus=0.5),
                                          None, {}, wait=True))
    started: list[str] = []
    try:
        shell(source.sandbox_id, "echo kept > /root/kept")
        for attempt in range(3):
            snap = admin.call(lambda: svc.snapshot(source.sandbox_id, None, f"race-{uuid.uuid4().hex[:8]}"))

            async def delete_mid_start():
                while not store.starting(snap.name):  # a start is taking the files now
                    await asyncio.sleep(0.001)
                return await svc.delete_snapshot(snap.name, None)

            async def race():
                starts = [svc.start(SandboxStartRequest(snapshot=snap.name), None, {}, wait=True) for _ in range(2)]
                if attempt == 2:
                    # deleted after the starts were checked and recorded, before they reach the
                    # worker: both are absent, as if the snapshot had never been there
                    *ended, deleted = await asyncio.gather(*starts, svc.delete_snapshot(snap.name, None),
                                                           return_exceptions=True)
                    return [deleted, *ended]
                return await asyncio.gather(asyncio.wait_for(delete_mid_start(), 60), *starts,
                                            return_exceptions=True)

            results = admin.call(race)
            deleted = results.pop(0)
            outcomes = []
            for result in results:
                if isinstance(result, SnapshotNotFound):
                    outcomes.append("absent")
                    continue
                assert hasattr(result, "sandbox_id"), repr(result)  # a record, not an error
                started.append(result.sandbox_id)
                assert result.state == "running", result
                assert shell(result.sandbox_id, "cat /root/kept") == "kept\n"
                outcomes.append("ran")
            assert outcomes == ["absent"] * 2 if attempt == 2 else "ran" in outcomes, outcomes
            if isinstance(deleted, Conflict):  # docker: its children run on the snapshot's image
                assert admin.backend == "docker", repr(deleted)
                for sid in started:
                    admin.call(lambda: svc.delete(sid, None))
                started.clear()
                admin.call(lambda: svc.delete_snapshot(snap.name, None))
            else:
                assert deleted is None, repr(deleted)
            with pytest.raises(SnapshotNotFound):
                admin.call(lambda: svc.get_snapshot(snap.name, None))
    finally:
        for sid in [*started, source.sandbox_id]:
            admin.call(lambda: svc.delete(sid, None))


async def test_bad_input_is_a_clear_4xx_and_nothing_is_lost(admin, box):
    url = f"{admin.url}{PREFIX}/sandboxes/{box.sandbox_id}"
    for count in (0, 1000, -1, "2"):
        r = httpx.post(url + "/fork", json={"count": count})
        assert r.status_code == 422 and "count" in r.json()["message"], r.text
    r = httpx.post(url + "/fork", json={"count": 2, "mode": "memory"})
    assert r.status_code == 422 and "mode" in r.json()["message"]
    r = httpx.post(url + "/snapshot", json={"name": "../etc"})
    assert r.status_code == 422 and "name" in r.json()["message"]
    with pytest.raises(BadRequest, match="gvisor"):  # the backends that can, named
        await box.snapshot(mode="full")
    with pytest.raises(BadRequest, match="gvisor"):
        await box.fork(2, mode="full")
    r = httpx.post(f"{admin.url}{PREFIX}/sandboxes/no-such-sandbox/pause")
    assert r.status_code == 404
    assert httpx.delete(f"{admin.url}{PREFIX}/snapshots/no-such-snapshot").status_code == 404
    assert await out(box, "echo still-running") == "still-running"  # nothing lost
    assert [s for s in await box.list_snapshots() if s.source.startswith(box.sandbox_id[:8])] == []


async def test_a_stopped_sandbox_cannot_be_paused_and_a_paused_one_can_be_stopped(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    try:
        await sandbox.pause()
        await sandbox.stop()  # a frozen sandbox stops (thawed first), files kept
        status = await sandbox.get_status(include_all_states=True)
        assert status.lifecycle_state == "stopped"
        with pytest.raises(Conflict, match="only a running sandbox can be paused"):
            await sandbox.pause()
        with pytest.raises(Conflict, match="only a paused sandbox can be resumed"):
            await sandbox.resume()
    finally:
        await sandbox.delete()
        await sandbox.aclose()


async def test_auto_resume_and_on_timeout_pause(admin):
    sandbox = Sandbox(config(admin, auto_clear_seconds=1, on_timeout="pause", auto_resume=True))
    await sandbox.start()
    try:
        await sandbox.arun("echo 41 > /root/n")

        async def paused():
            return (await sandbox.get_status()).lifecycle_state == "paused"


        await until(paused, timeout=60)  # the idle timeout paused it instead of stopping it
        assert await out(sandbox, "cat /root/n") == "41"  # the call resumed it first (auto_resume)
        events = [h.event for h in (await sandbox.get_status()).state_history]
        assert "idle_timeout" in events and "auto_resume" in events
    finally:
        await sandbox.delete()
        await sandbox.aclose()


def test_the_sync_sdk_pauses_snapshots_and_forks(admin):
    with SyncSandbox(config(admin)) as sandbox:
        sandbox.write_bytes("/root/x", b"1")
        sandbox.pause()
        sandbox.resume()
        snap = sandbox.snapshot()
        children = sandbox.fork(2)
        try:
            assert [c.read_bytes("/root/x") for c in children] == [b"1", b"1"]
            assert all(isinstance(c, SyncSandbox) for c in children)
        finally:
            for child in children:
                child.delete()
        sandbox.delete_snapshot(snap.name)
        for left in sandbox.list_snapshots():  # a fork's snapshot docker kept for its (deleted) children
            if left.source.startswith(sandbox.sandbox_id[:8]):
                try:
                    sandbox.delete_snapshot(left.name)
                except SnapshotNotFound:  # it went with the last child meanwhile
                    pass
        sandbox.delete()


async def test_a_paused_sandbox_survives_an_admin_restart(tmp_path_factory):
    """The same state dir, a new admin: the record says paused, the processes are still frozen,
    and a resume brings them back."""
    from tests.admin.harness import Admin

    state = tmp_path_factory.mktemp("h8-paused")
    first = Admin("bwrap", state_dir=state).start()
    second = None
    try:
        sandbox = Sandbox(config(first))
        await sandbox.start()
        pid = await sleeper(sandbox)
        await sandbox.pause()
        await sandbox.aclose()
        first.stop()  # the admin goes; its sandboxes stay
        second = Admin("bwrap", state_dir=state).start()
        again = Sandbox(config(second))
        await again.attach(sandbox.sandbox_id)
        assert (await again.get_status()).lifecycle_state == "paused"
        with pytest.raises(SandboxPaused):
            await again.arun("true")
        await again.resume()
        assert await out(again, f"cat /proc/{pid}/cmdline | tr '\\0' ' '") == "sleep 1000"
        await again.delete()
        await again.aclose()
    finally:
        (second or first).stop(stop_sandboxes=True)
        if second is not None:
            first.stop()


@pytest.fixture(scope="module")
def gvisor_admin():
    """An admin on the gvisor backend (skipped where runsc cannot run), for full snapshots."""
    from tests.admin.harness import Admin

    server = Admin("gvisor").start()
    yield server
    server.stop(stop_sandboxes=True)


@pytest.mark.gvisor
async def test_a_full_fork_on_gvisor_continues_the_shell_and_its_variables_in_each_child(gvisor_admin):
    parent = Sandbox(config(gvisor_admin))
    await parent.start()
    children = []
    try:
        await parent.create_session(CreateBashSessionRequest(session="s"))
        await parent.arun("cd /tmp && X=41", session="s")
        snap = await parent.snapshot(mode="full")
        assert snap.mode == "full" and snap.backend == "gvisor"
        assert (await parent.arun("echo $X $PWD", session="s")).output.strip() == "41 /tmp"  # the parent runs on
        children = await parent.fork(2, mode="full")
        for child in children:  # each goes on with the parent's shell: its variable and its cwd
            assert (await child.arun("echo $((X+1)) $PWD", session="s")).output.strip() == "42 /tmp"
        await children[0].arun("X=100", session="s")
        assert (await children[1].arun("echo $X", session="s")).output.strip() == "41"  # then each its own
        assert (await children[0].arun("echo $X", session="s")).output.strip() == "100"  # the control
        await parent.delete_snapshot(snap.name)
    finally:
        for sandbox in (*children, parent):
            await sandbox.delete()
            await sandbox.aclose()


@pytest.mark.gvisor
async def test_restores_on_gvisor_bring_the_shell_and_files_back_in_place(gvisor_admin):
    sandbox = Sandbox(config(gvisor_admin))
    await sandbox.start()
    snap = None
    try:
        await sandbox.create_session(CreateBashSessionRequest(session="s"))
        await sandbox.arun("cd /tmp && X=41 && echo kept > /root/f", session="s")
        snap = await sandbox.snapshot(mode="full")
        await sandbox.arun("cd / && X=99 && echo changed > /root/f && echo new > /root/new", session="s")
        await sandbox.restore(snap.name)
        # the same sandbox, its shell where the snapshot left it, its files as they were
        assert (await sandbox.get_status()).lifecycle_state == "running"
        assert (await sandbox.arun("echo $X $PWD", session="s")).output.strip() == "41 /tmp"
        assert await sandbox.read_bytes("/root/f") == b"kept\n"
        assert (await out(sandbox, "cat /root/new 2>/dev/null || echo absent")) == "absent"
        await sandbox.arun("X=7", session="s")  # the control: the restored shell is live
        assert (await sandbox.arun("echo $X", session="s")).output.strip() == "7"
        # a filesystem snapshot of the same sandbox restores in place: files only
        fs = await sandbox.snapshot()
        await sandbox.arun("echo again > /root/f && rm /etc/os-release && echo new > /tmp/t", session="s")
        assert (await out(sandbox, "cat /root/f; test -e /etc/os-release || echo gone")) == "again\ngone"
        await sandbox.restore(fs.name)
        await sandbox.delete_snapshot(fs.name)
        assert await sandbox.read_bytes("/root/f") == b"kept\n"
        assert (await out(sandbox, "test -s /etc/os-release && echo back; cat /tmp/t 2>/dev/null || echo absent")) \
            == "back\nabsent"
    finally:
        await sandbox.delete()
        await sandbox.aclose()
        if snap is not None:
            await sandbox.delete_snapshot(snap.name)


def metric(admin, name: str, **labels) -> float:
    """One sample of the admin's /metrics whose labels include ``labels`` (0 when absent)."""
    for line in httpx.get(admin.url + "/metrics").text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return 0.0


async def test_metrics_count_pauses_snapshots_forks_and_paused_sandboxes(admin, box):
    b = admin.backend
    before = {"pause": metric(admin, "rock_sandbox_pause_duration_seconds_count", backend=b, op="pause"),
              "resume": metric(admin, "rock_sandbox_pause_duration_seconds_count", backend=b, op="resume"),
              "snap": metric(admin, "rock_snapshot_duration_seconds_count", backend=b, mode="filesystem"),
              "children": metric(admin, "rock_fork_children_total", backend=b, mode="filesystem")}
    await box.pause()
    assert metric(admin, "rock_sandboxes_paused") >= 1
    assert metric(admin, "rock_sandbox_pause_duration_seconds_count", backend=b, op="pause") == before["pause"] + 1
    await box.resume()
    assert metric(admin, "rock_sandbox_pause_duration_seconds_count", backend=b, op="resume") == before["resume"] + 1
    snap = await box.snapshot()
    children = await box.fork(2)
    try:
        # the fork's own snapshot counts too
        assert metric(admin, "rock_snapshot_duration_seconds_count", backend=b, mode="filesystem") == before["snap"] + 2
        assert metric(admin, "rock_fork_children_total", backend=b, mode="filesystem") == before["children"] + 2
    finally:
        for child in children:
            await child.delete()
            await child.aclose()
        await box.delete_snapshot(snap.name)
        await _drop_fork_snapshots(box)


async def test_a_fork_without_wait_answers_at_once_and_keep_snapshot_keeps_it(admin, box):

    url = f"{admin.url}{PREFIX}/sandboxes/{box.sandbox_id}/fork"
    async with httpx.AsyncClient(timeout=300) as http:
        r = await http.post(url, json={"count": 2, "wait": False, "keep_snapshot": True})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    ids = [c["sandbox_id"] for c in result["sandboxes"]]
    children = []
    try:
        assert len(ids) == 2 and result["snapshot"] is not None
        for sid in ids:
            child = Sandbox(config(admin))
            await child.attach(sid)
            children.append(child)

            async def running(child=child):
                return (await child.get_status(include_all_states=True)).lifecycle_state == "running"

            await until(running, timeout=120)  # pending at the answer, running as each comes up
            assert await out(child, "echo up") == "up"
        # kept: listed, and more sandboxes start from it
        assert result["snapshot"]["name"] in [s.name for s in await box.list_snapshots()]
        more = Sandbox(config(admin, snapshot=result["snapshot"]["name"]))
        await more.start()
        children.append(more)
        assert await out(more, "echo again") == "again"
    finally:
        for child in children:
            await child.delete()
            await child.aclose()
        await box.delete_snapshot(result["snapshot"]["name"])
