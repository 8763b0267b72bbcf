"""Reset in place: ``sandbox.restore(snapshot)`` rolls a sandbox back and keeps it (its id, its
tokens, its ports, the caller's connection), once per backend of the session's admin (docker and
bwrap), through the SDK and ROCK's HTTP API. The full (memory) restore on gVisor is in
``test_snapshots.py``, beside the other gVisor snapshot tests and their admin."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rock.actions import CreateBashSessionRequest
from rock.errors import AgentGone, BadRequest, Conflict, SandboxNotFound, SnapshotNotFound
from rock.sdk.sandbox import Sandbox
from tests.sdk.test_sandbox import config, until

PREFIX = "/apis/envs/sandbox/v1"


async def out(sandbox: Sandbox, cmd: str) -> str:
    return (await sandbox.arun(cmd)).output.strip()


@pytest.fixture
async def box(admin):
    """A sandbox of its own per test; the snapshots a test names in ``box.made`` are deleted after
    it (on docker a snapshot is an engine image: it goes once no container uses it)."""
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    sandbox.made = []
    yield sandbox
    await sandbox.delete()
    await sandbox.aclose()
    for name in sandbox.made:
        async def gone(name=name):
            try:
                await sandbox.delete_snapshot(name)
            except SnapshotNotFound:
                return True
            except Conflict:  # the engine is still removing the container that used it
                return False
            return True
        await until(gone, timeout=60)


def client_port(response: httpx.Response) -> int:
    """The local port of the TCP connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


async def test_a_restored_sandbox_keeps_its_id_and_connection_and_has_the_snapshots_files(admin, box):
    await box.write_bytes("/root/kept.txt", b"before the snapshot")
    snap = await box.snapshot()
    box.made.append(snap.name)
    await box.write_bytes("/root/kept.txt", b"changed after it")
    await box.write_bytes("/root/new.txt", b"written after it")
    await box.arun("mkdir -p /opt/made && echo x > /opt/made/f")
    with httpx.Client(base_url=admin.url, limits=httpx.Limits(max_connections=1)) as http:
        before = http.get(PREFIX + "/get_status", params={"sandbox_id": box.sandbox_id})
        assert before.status_code == 200
        r = http.post(f"{PREFIX}/sandboxes/{box.sandbox_id}/restore", json={"snapshot": snap.name}, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["sandbox_id"] == box.sandbox_id
        after = http.get(PREFIX + "/get_status", params={"sandbox_id": box.sandbox_id})
        assert after.json()["result"]["is_alive"] is True
        assert client_port(after) == client_port(before)  # the caller's connection went on
    # the same SDK object, the same id: the snapshot's files, nothing written since
    assert await box.read_bytes("/root/kept.txt") == b"before the snapshot"
    assert await out(box, "cat /root/new.txt 2>/dev/null || echo absent") == "absent"
    assert await out(box, "ls /opt/made 2>/dev/null || echo absent") == "absent"
    status = await box.get_status()
    assert status.sandbox_id == box.sandbox_id and status.lifecycle_state == "running"
    # and it goes on as a sandbox: a write now stays (the control that the files are live)
    await box.write_bytes("/root/after-restore.txt", b"new life")
    assert await box.read_bytes("/root/after-restore.txt") == b"new life"
    # restored twice: each restore is from the snapshot, not from the previous restore
    await box.restore(snap)
    assert await out(box, "cat /root/after-restore.txt 2>/dev/null || echo absent") == "absent"
    assert await box.read_bytes("/root/kept.txt") == b"before the snapshot"


async def test_a_restore_while_a_command_runs_ends_it_with_an_error_that_says_so(admin, box):
    snap = await box.snapshot()
    box.made.append(snap.name)
    await box.create_session(CreateBashSessionRequest(session="s"))
    await box.arun("echo started > /root/started", session="s")
    running = asyncio.ensure_future(box.arun("sleep 600; echo finished", session="s", timeout=900))
    await asyncio.sleep(0)  # the command is sent before the restore
    for _ in range(100):  # the sleep is running in the sandbox (no fixed wait)
        if "sleep 600" in await out(box, "ps -eo args"):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the long command never started")
    await box.restore(snap.name)
    with pytest.raises(AgentGone, match="restored to snapshot"):
        await asyncio.wait_for(running, 60)
    assert "sleep 600" not in await out(box, "ps -eo args")  # its process ended with the old state
    assert await out(box, "echo alive") == "alive"  # new commands run


async def test_restore_refuses_bad_input_and_keeps_the_sandbox(admin, box):
    await box.write_bytes("/root/mine.txt", b"still here")
    with pytest.raises(SnapshotNotFound):
        await box.restore("no-such-snapshot")
    with httpx.Client(base_url=admin.url) as http:
        for body in ({}, {"snapshot": "../x"}, {"snapshot": "ok", "extra": 1}, {"snapshot": ""}):
            r = http.post(f"{PREFIX}/sandboxes/{box.sandbox_id}/restore", json=body)
            assert r.status_code == 422, (body, r.text)
        r = http.post(f"{PREFIX}/sandboxes/no-such-sandbox/restore", json={"snapshot": "x"})
        assert r.status_code == 404 and "no-such-sandbox" in r.json()["message"]
    assert await box.read_bytes("/root/mine.txt") == b"still here"  # nothing was lost
    # a stopped sandbox is not restored in place (409), and its snapshot can still start a new one
    snap = await box.snapshot()
    box.made.append(snap.name)
    other = Sandbox(config(admin))
    await other.start()
    try:
        await other.stop()
        with pytest.raises((Conflict, SandboxNotFound)):
            await other.restore(snap.name)
    finally:
        await other.delete()
        await other.aclose()


async def test_a_paused_sandbox_restored_runs_and_a_snapshot_of_another_sandbox_can_be_used(admin, box):
    source = Sandbox(config(admin))
    await source.start()
    try:
        await source.write_bytes("/root/from-source.txt", b"source's file")
        snap = await source.snapshot()
        box.made.append(snap.name)
    finally:
        await source.delete()
        await source.aclose()
    await box.write_bytes("/root/boxs.txt", b"box's file")
    await box.pause()
    await box.restore(snap.name)
    status = await box.get_status()
    assert status.lifecycle_state == "running"
    assert [h.event for h in status.state_history][-1] == "restore"
    assert await box.read_bytes("/root/from-source.txt") == b"source's file"
    assert await out(box, "cat /root/boxs.txt 2>/dev/null || echo absent") == "absent"


def test_a_snapshot_of_another_backend_is_refused(admin, box):
    """The worker's own check (the admin's backends are one per session): a snapshot whose backend
    is not the sandbox's is a 400 naming both, and the sandbox runs on."""
    async def restore_foreign():
        worker = admin.ctx.worker
        snap = await worker.snapshot(box.sandbox_id, "foreign-backend-probe", None)
        try:
            foreign = snap.model_copy(update={"backend": "gvisor" if admin.backend != "gvisor" else "bwrap"})
            worker.runtime.snapshots.save(foreign)
            with pytest.raises(BadRequest, match="taken on the"):
                await worker.restore(box.sandbox_id, foreign.name, None)
        finally:
            worker.runtime.snapshots.save(snap)
            await worker.delete_snapshot(snap.name, None)
        return worker.get(box.sandbox_id).state

    assert admin.call(restore_foreign) == "running"


async def test_a_restore_undoes_deletions_links_modes_and_replaced_directories(admin, box):
    """The snapshot's view exactly, whatever happened since: image files deleted before it stay
    deleted and those deleted after it come back; a directory emptied and refilled before it shows
    only its new files; a link, a mode and a file replaced by a link to a host-looking path are
    the snapshot's again, and the restore writes the file, not through the link."""
    await box.arun("rm /etc/issue && rm -rf /usr/share/doc && mkdir /usr/share/doc && echo mine > /usr/share/doc/only"
                   " && ln -s /etc/hostname /root/link && echo data > /root/f && chmod 600 /root/f")
    passwd = await out(box, "sha256sum /etc/passwd")
    init_started = await out(box, "cut -d' ' -f22 /proc/1/stat")  # clock ticks after the host's boot
    snap = await box.snapshot()
    box.made.append(snap.name)
    await box.arun("echo back > /etc/issue; rm -rf /usr/share/doc; mkdir -p /usr/share/doc/x; rm /root/link;"
                   " mkdir /root/link; echo in > /root/link/y; rm /etc/os-release; rm /root/f;"
                   " ln -s /etc/passwd /root/f; echo new > /root/g")
    # the control: every change is there before the restore
    assert await out(box, "cat /etc/issue; ls /usr/share/doc; readlink /root/f; test -e /etc/os-release || echo gone") \
        == "back\nx\n/etc/passwd\ngone"
    await box.restore(snap)
    assert await out(box, "test -e /etc/issue || echo absent") == "absent"
    assert await out(box, "ls /usr/share/doc") == "only"
    assert await out(box, "readlink /root/link") == "/etc/hostname"
    assert await out(box, "stat -c '%a %F' /root/f; cat /root/f") == "600 regular file\ndata"
    assert await out(box, "grep -c . /etc/os-release") != "0"  # the image's file is back
    assert await out(box, "test -e /root/g || echo absent") == "absent"
    assert await out(box, "sha256sum /etc/passwd") == passwd  # nothing was written through the link
    # rolled back where it stands (docker included): the sandbox's init is the same process, where
    # a restore by a new start would have started a new one
    assert await out(box, "cut -d' ' -f22 /proc/1/stat") == init_started


async def test_a_restore_brings_large_files_back_byte_for_byte_and_the_snapshot_stays_as_taken(admin, box):
    """Files large enough to go as the snapshot's own files (where the backend passes them to the
    agent as descriptors) come back with their bytes, mode and times, in place; writing to one
    afterwards changes the sandbox's copy only: a second restore brings the snapshot's bytes again."""
    await box.arun("for n in 1 2 3; do head -c $((n * 700000 + 1)) /dev/urandom > /root/big-$n; done;"
                   " echo small > /root/small; chmod 640 /root/big-2; touch -d '2020-01-02 03:04:05' /root/big-3")
    look = "sha256sum /root/big-* /root/small; stat -c '%n %a %s %Y' /root/big-* /root/small"
    before = await out(box, look)
    init_started = await out(box, "cut -d' ' -f22 /proc/1/stat")
    snap = await box.snapshot()
    box.made.append(snap.name)
    await box.arun("head -c 100 /dev/urandom > /root/big-1; rm /root/big-2; echo other > /root/small;"
                   " printf x | dd of=/root/big-3 bs=1 count=1 conv=notrunc 2>/dev/null")
    assert await out(box, look + " 2>&1") != before  # the control: the change is there
    await box.restore(snap)
    assert await out(box, look) == before
    await box.arun("printf y | dd of=/root/big-1 bs=1 count=1 conv=notrunc 2>/dev/null")
    assert await out(box, "sha256sum /root/big-1") != before.splitlines()[0]
    await box.restore(snap)
    assert await out(box, look) == before
    assert await out(box, "cut -d' ' -f22 /proc/1/stat") == init_started  # in place, not a new start
