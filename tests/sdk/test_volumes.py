"""Volumes through the SDK and ROCK's HTTP API on every backend (docker, bwrap, gVisor): a file
written in one sandbox is read in another after the first stopped, a read-only mount refuses
writes, a write past the size fails with ENOSPC inside the sandbox, a volume in use is not
deleted, and another tenant's volume is a missing one. Real admins, real sandboxes."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from rock.errors import BadRequest, Conflict, VolumeNotFound
from rock.sdk.sandbox import Sandbox, SandboxConfig, VolumeMount, Volumes
from tests.admin.harness import Admin, backend_params
from tests.conftest import GVISOR, SESSION_ROOT

PREFIX = "/apis/envs/sandbox/v1"
TOKENS = {"vol-token-a": "tenant-a", "vol-token-b": "tenant-b"}


@pytest.fixture(scope="module", params=[*backend_params(), GVISOR])
def vol_admin(request):
    server = Admin(request.param, tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


def cfg(admin, token="vol-token-a", **kw) -> SandboxConfig:
    return SandboxConfig(base_url=admin.url, token=token, memory="512m", cpus=1, **kw)


async def run(sandbox: Sandbox, cmd: str):
    return await sandbox.arun(cmd)


async def test_a_volume_outlives_its_sandbox_mounts_read_only_and_keeps_its_size(vol_admin):
    name = f"data-{uuid.uuid4().hex[:8]}"
    volumes = Volumes(cfg(vol_admin))
    other = Volumes(cfg(vol_admin, token="vol-token-b"))
    started: list[Sandbox] = []

    async def start(config: SandboxConfig) -> Sandbox:
        sandbox = Sandbox(config)
        started.append(sandbox)
        await sandbox.start()
        return sandbox

    try:
        info = await volumes.create(name, size="4M")
        assert info.size_bytes == 4 << 20 and [v.name for v in await volumes.list()] == [name]
        writer = await start(cfg(vol_admin, volumes=[VolumeMount(name=name, path="/data")]))
        assert (await run(writer, "echo hello from A > /data/note && cat /data/note")).output.strip() == "hello from A"
        await writer.stop()

        reader = await start(cfg(vol_admin, volumes=[VolumeMount(name=name, path="/data", read_only=True),
                                                      VolumeMount(name=name, path="/mnt/rw")]))
        assert (await run(reader, "cat /data/note")).output.strip() == "hello from A"
        refused = await run(reader, "echo x > /data/other; echo rc=$?")
        assert "rc=1" in refused.output and "Read-only file system" in refused.output, refused.output
        assert (await run(reader, "ls /data")).output.split() == ["note"]  # the refused write left nothing
        # the control: the same volume read-write takes a small file, then refuses what passes its size
        assert "rc=0" in (await run(reader, "echo small > /mnt/rw/small; echo rc=$?")).output
        full = await run(reader, "dd if=/dev/zero of=/mnt/rw/big bs=1M count=8 2>&1; echo rc=$?")
        assert "No space left on device" in full.output and "rc=1" in full.output, full.output
        assert (await run(reader, "cat /data/small")).output.strip() == "small"

        # in use: a clear 409 naming the sandbox; another tenant: missing, on get, delete and mount
        with pytest.raises(Conflict, match="stop them first"):
            await volumes.delete(name)
        with pytest.raises(VolumeNotFound):
            await other.get(name)
        with pytest.raises(VolumeNotFound):
            await other.delete(name)
        with pytest.raises(VolumeNotFound):
            await start(cfg(vol_admin, token="vol-token-b", volumes=[VolumeMount(name=name, path="/data")]))
        assert await other.list() == []
        mine = await other.create(name, size="1M")  # the same name is the other tenant's own volume
        assert mine.volume_id != info.volume_id
        await other.delete(name)

        await reader.stop()
        await volumes.delete(name)
        with pytest.raises(VolumeNotFound):
            await volumes.get(name)
    finally:
        for sandbox in started:
            if sandbox.sandbox_id:
                await sandbox.stop()
            await sandbox.aclose()
        for v in (volumes, other):
            for left in await v.list():
                await v.delete(left.name)
            await v.aclose()
    # nothing of the volume stays mounted on the host
    assert not any((vol_admin.state_dir / "volumes" / "mnt").glob("*"))


@pytest.mark.parametrize("body, why", [
    ({"name": "../etc"}, "name"), ({"name": ""}, "name"), ({"name": "a" * 64}, "name"),
    ({"name": "ok", "size": "1K"}, "size"), ({"name": "ok", "size": "100T"}, "size"),
    ({"name": "ok", "size": "lots"}, "size"), ({"name": "ok", "size": True}, "size"),
])
def test_bad_volumes_are_refused_with_4xx(vol_admin, body, why):
    r = httpx.post(vol_admin.url + PREFIX + "/volumes", json=body, headers={"Authorization": "Bearer vol-token-a"})
    assert r.status_code in (400, 422) and why in r.text, r.text
    assert httpx.get(vol_admin.url + PREFIX + "/volumes",
                     headers={"Authorization": "Bearer vol-token-a"}).json()["result"] == []


async def test_mount_paths_over_the_sandboxes_machinery_are_refused(vol_admin):
    volumes = Volumes(cfg(vol_admin))
    name = f"paths-{uuid.uuid4().hex[:8]}"
    await volumes.create(name, size="1M")
    try:
        for path in ("/", "/proc", "/proc/sys", "/sys", "/dev", "/.rock", "/.rock/run", "/data/../proc", "/a//b"):
            sandbox = Sandbox(cfg(vol_admin, volumes=[VolumeMount(name=name, path=path)]))
            with pytest.raises(BadRequest, match="volume mount path"):
                await sandbox.start()
            assert sandbox.sandbox_id is None
            await sandbox.aclose()
        async with httpx.AsyncClient() as http:
            r = await http.post(vol_admin.url + PREFIX + "/start_async", headers={"Authorization": "Bearer vol-token-a"},
                                json={"volumes": [{"name": name, "path": "data"}]})
        assert r.status_code == 422 and "path" in r.text, r.text
    finally:
        await volumes.delete(name)
        await volumes.aclose()


async def test_a_sandbox_from_a_snapshot_mounts_the_volumes_its_own_request_names(vol_admin):
    if vol_admin.backend == "gvisor":
        pytest.skip("the snapshot's rules are the same on every backend; docker and bwrap show them")
    volumes = Volumes(cfg(vol_admin))
    name = f"snap-{uuid.uuid4().hex[:8]}"
    await volumes.create(name, size="1M")
    boxes: list[Sandbox] = []
    snap = None
    try:
        source = Sandbox(cfg(vol_admin, volumes=[VolumeMount(name=name, path="/data")]))
        boxes.append(source)
        await source.start()
        await run(source, "echo in the volume > /data/v; echo in the layer > /root/l")
        snap = await source.snapshot()
        await source.stop()
        bare = Sandbox(cfg(vol_admin, snapshot=snap.name))
        boxes.append(bare)
        await bare.start()
        assert (await run(bare, "cat /root/l")).output.strip() == "in the layer"
        assert "in the volume" not in (await run(bare, "cat /data/v 2>&1")).output  # not in the snapshot
        await bare.stop()
        await volumes.delete(name)  # nothing started from the snapshot holds it
        await volumes.create(name, size="1M")
        again = Sandbox(cfg(vol_admin, snapshot=snap.name, volumes=[VolumeMount(name=name, path="/data")]))
        boxes.append(again)
        await again.start()
        assert (await run(again, "echo new > /data/v; cat /data/v")).output.strip() == "new"
        with pytest.raises(Conflict):
            await volumes.delete(name)
    finally:
        for sandbox in boxes:
            if sandbox.sandbox_id:
                await sandbox.delete()  # docker: a kept container holds the snapshot's image
            await sandbox.aclose()
        if snap is not None:
            await boxes[0].delete_snapshot(snap.name)
        for left in await volumes.list():
            await volumes.delete(left.name)
        await volumes.aclose()


@pytest.mark.bwrap
async def test_volumes_outlive_an_admin_restart_and_nothing_stays_mounted():
    state = Path(tempfile.mkdtemp(prefix="v", dir=SESSION_ROOT))  # short: the agent's socket path has a limit
    first = Admin("bwrap", state_dir=state, tokens=TOKENS).start()
    try:
        volumes = Volumes(cfg(first))
        await volumes.create("kept", size="1M")
        box = Sandbox(cfg(first, volumes=[VolumeMount(name="kept", path="/data")]))
        await box.start()
        try:
            await run(box, "echo before the restart > /data/f")
        finally:
            await box.delete()
            await box.aclose()
        await volumes.aclose()
    finally:
        first.stop(stop_sandboxes=True)
    assert str(state) not in Path("/proc/self/mountinfo").read_text()  # the admin unmounted its volumes on leaving
    second = Admin("bwrap", state_dir=state, tokens=TOKENS).start()
    try:
        volumes = Volumes(cfg(second))
        assert [v.name for v in await volumes.list()] == ["kept"]
        box = Sandbox(cfg(second, volumes=[VolumeMount(name="kept", path="/data", read_only=True)]))
        await box.start()
        try:
            assert (await run(box, "cat /data/f")).output.strip() == "before the restart"
        finally:
            await box.delete()
            await box.aclose()
        await volumes.delete("kept")
        await volumes.aclose()
    finally:
        second.stop(stop_sandboxes=True)
