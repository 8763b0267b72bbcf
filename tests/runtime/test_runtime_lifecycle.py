"""Create, destroy, alive, reap and re-attach, once per backend, against the real thing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import pytest

from rock.config import Settings
from rock.errors import BadRequest, SandboxStartError
from rock.runtime import AUTO_ORDER, get_runtime_class, pick_backend
from rock.runtime.base import Runtime, RuntimeHandle


def test_registry_names_every_backend():
    for name in ("docker", "bwrap", "local"):
        cls = get_runtime_class(name)
        assert issubclass(cls, Runtime) and cls.name == name
    with pytest.raises(BadRequest):
        get_runtime_class("podman")


def test_auto_picks_the_first_available_backend():
    expected = next(n for n in AUTO_ORDER if get_runtime_class(n).available() is None)
    assert pick_backend("auto") == expected
    assert pick_backend("local") == "local"


async def test_create_alive_destroy(runtime, new_spec, agent):
    handle = await runtime.create(new_spec())
    sandbox_dir = os.path.dirname(handle.run_dir)
    try:
        assert await runtime.alive(handle)
        async with agent(handle) as client:
            result = await client.exec("echo hello from $ROCK_SANDBOX_ID", shell=True)
        assert result.exit_code == 0
        assert result.stdout == f"hello from {handle.sandbox_id}\n"
    finally:
        await runtime.destroy(handle)
    assert not await runtime.alive(handle)
    assert not os.path.exists(sandbox_dir)
    await runtime.destroy(handle)  # destroying twice is harmless


async def test_release_ends_the_sandbox_and_leaves_nothing_behind(runtime, new_spec, agent):
    """A delete's end of a sandbox: not alive once ``release`` returns (bwrap removes its cgroup and
    files in the background); the same id starts again right away, and after the runtime's close
    nothing of it is left."""
    spec = new_spec()
    first = await runtime.create(spec)
    sandbox_dir = os.path.dirname(first.run_dir)
    await runtime.release(first)
    for _ in range(100):  # the kill is sent; the kernel takes a moment to end the process
        if not await runtime.alive(first):
            break
        await asyncio.sleep(0.01)
    assert not await runtime.alive(first)
    second = await runtime.create(spec)  # waits for the first one's removal, then builds it anew
    try:
        assert await runtime.alive(second)
        async with agent(second) as client:
            assert (await client.exec("echo again", shell=True)).stdout == "again\n"
    finally:
        await runtime.release(second)
    await runtime.close()
    assert not os.path.exists(sandbox_dir)
    if runtime.name == "bwrap":
        from rock.runtime import cgroups

        assert not cgroups.Cgroup(second.runtime_id).exists()
        assert not cgroups.Cgroup(second.runtime_id).pids()


async def test_handle_survives_a_json_round_trip_and_a_new_runtime(runtime, settings, new_spec, agent):
    handle = await runtime.create(new_spec())
    loaded = RuntimeHandle.model_validate_json(handle.model_dump_json())
    fresh = type(runtime)(settings, runtime.owner)  # what a restarted worker builds
    try:
        assert await fresh.alive(loaded)
        async with agent(loaded) as client:
            assert (await client.exec(["true"])).exit_code == 0
    finally:
        await fresh.destroy(loaded)
    assert not await runtime.alive(handle)


async def test_reap_removes_only_unknown_sandboxes(runtime, new_spec, sandboxes):
    keep = await sandboxes(runtime, new_spec())
    drop = await runtime.create(new_spec())
    removed = await runtime.reap({keep.sandbox_id})
    assert drop.sandbox_id in removed and keep.sandbox_id not in removed
    assert not await runtime.alive(drop)
    assert await runtime.alive(keep)


async def test_reap_leaves_other_owners_alone(runtime, new_spec, sandboxes):
    """Another worker on this machine (its own owner and state dir) reaps only its own."""
    ours = await sandboxes(runtime, new_spec())
    other_state = tempfile.mkdtemp(prefix="o", dir=os.path.dirname(runtime.settings.state_dir))
    try:
        other = type(runtime)(Settings(state_dir=other_state), "someone-else")
        assert ours.sandbox_id not in await other.reap(set())
        assert await runtime.alive(ours)
    finally:
        shutil.rmtree(other_state, ignore_errors=True)


MANY_FILES = ("import os\nos.mkdir('/many')\nfor i in range(15000): os.close(os.open('/many/%d' % i, os.O_CREAT))\n"
              "print('made', flush=True)\nimport time\ntime.sleep(300)")


@pytest.mark.docker
async def test_a_reap_that_meets_a_removal_under_way_goes_on(make_runtime, tmp_path):
    """An admin that starts while another process is still removing an old rock container (the
    engine answers 409, "removal ... is already in progress") starts all the same: a CI run saw an
    admin's start fail so, and every test of its module with it. The other removal here lasts a
    moment because the container's layer holds 15,000 files to delete; an attempt whose removal
    ended before the reap's own came tried nothing, and is made again."""
    from docker.errors import NotFound

    from rock.runtime.docker.engine import LABEL, client

    runtime = make_runtime("docker")
    engine = client()
    for _ in range(3):
        sid = f"ghost-{uuid.uuid4().hex[:8]}"
        # This runtime's own, unknown to it (a leftover of its owner's last run): its reap removes
        # it, and another test process's reap (another owner; the state dir is there) leaves it.
        labels = {LABEL: "1", "rock.owner": runtime.owner, "rock.sandbox_id": sid, "rock.state_dir": str(tmp_path)}
        cid = engine.create_container("python:3.11", ["python3", "-c", MANY_FILES], labels=labels,
                                      host_config=engine.create_host_config(network_mode="none"))["Id"]
        removing = threading.Thread(target=lambda: engine.remove_container(cid, force=True, v=True), daemon=True)
        try:
            engine.start(cid)
            deadline = time.monotonic() + 120
            while b"made" not in engine.logs(cid):
                assert time.monotonic() < deadline and engine.inspect_container(cid)["State"]["Running"]
                await asyncio.sleep(0.1)
            removing.start()
            try:
                while (state := engine.inspect_container(cid)["State"])["Status"] != "removing":
                    assert time.monotonic() < deadline, state
                    await asyncio.sleep(0.01)
            except NotFound:  # the other removal ended before it was seen under way: nothing to try
                continue
            reaped = await runtime.reap(set())
        finally:
            if removing.ident is not None:  # started: its removal ends the container
                removing.join(60)
            else:
                try:
                    engine.remove_container(cid, force=True, v=True)
                except NotFound:
                    pass
        with pytest.raises(NotFound):
            engine.inspect_container(cid)
        if sid in reaped:  # the reap met the other removal (or it would have raised), and went on
            break
    else:
        pytest.fail("the other removal ended before the reap's own, three times: nothing was tried")


async def test_a_start_failure_reports_the_sandbox_output(runtime, new_spec, monkeypatch):
    if getattr(runtime, "zygote", None) is not None:
        monkeypatch.setattr(runtime, "zygote", None)  # the agent as bwrap's command; the zygote's case is below
    # The backend's module calls rock.runtime.agent_boot.agent_argv by the name it imported.
    monkeypatch.setattr(sys.modules[type(runtime).__module__], "agent_argv", lambda *a, **k: ["/bin/sh", "-c", "echo boom-7f3a >&2; exit 3"])
    spec = new_spec()
    with pytest.raises(SandboxStartError, match="boom-7f3a"):
        await runtime.create(spec)
    assert not (runtime.sandboxes_dir / spec.sandbox_id).exists()
    assert await runtime.reap(set()) == []  # the failed create left nothing to reap


async def test_sandbox_outlives_the_process_that_created_it(runtime, settings, new_spec, agent):
    """A worker restart must not take its sandboxes down: create from a child process that
    then exits, and re-attach from here."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from rock.config import Settings
        from rock.runtime import get_runtime_class
        from rock.runtime.base import SandboxSpec
        async def main():
            rt = get_runtime_class({runtime.name!r})(Settings(state_dir={str(settings.state_dir)!r}, allow_host_paths=True),
                                                     {runtime.owner!r})
            handle = await rt.create(SandboxSpec.model_validate_json(sys.argv[1]))
            print(handle.model_dump_json())
        asyncio.run(main())
    """)
    spec = new_spec()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, spec.model_dump_json(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    handle = RuntimeHandle.model_validate(json.loads(out.decode().strip().splitlines()[-1]))
    try:
        assert await runtime.alive(handle)
        async with agent(handle) as client:
            assert (await client.exec("echo still here", shell=True)).stdout == "still here\n"
    finally:
        await runtime.destroy(handle)


async def _until_empty(group, but: set[int], what: str) -> None:
    deadline = time.monotonic() + 10
    while group.pids() - but:
        assert time.monotonic() < deadline, f"still running after {what}: {group.pids()}"
        await asyncio.sleep(0.01)


@pytest.mark.bwrap
async def test_bwrap_sandbox_dies_with_its_shim(settings, make_runtime, new_spec, sandboxes):
    """Without the zygote, the worker's shim is bwrap's parent and bwrap has --die-with-parent."""
    from rock.runtime import cgroups

    settings.bwrap_zygote = False
    rt = make_runtime("bwrap")
    handle = await sandboxes(rt, new_spec())
    group = cgroups.Cgroup(handle.runtime_id)
    assert len(group.pids()) >= 4  # shim, bwrap, the sandbox's init and agent
    assert open(f"/proc/{handle.pid}/comm").read().strip() == "sh"
    os.kill(handle.pid, signal.SIGKILL)
    await _until_empty(group, {handle.pid}, "the shim died")
    assert not await rt.alive(handle)


@pytest.mark.bwrap
async def test_bwrap_sandbox_dies_with_its_pid_1(make_runtime, new_spec, sandboxes):
    """From the zygote, bwrap is started in the sandbox's cgroup with no shell in between, and the
    sandbox lives and dies with its pid 1, which its handle names."""
    from rock.runtime import cgroups

    rt = make_runtime("bwrap")
    handle = await sandboxes(rt, new_spec())
    group = cgroups.Cgroup(handle.runtime_id)
    init = int(handle.extra["init"].split(":")[0])
    members = group.pids()
    assert {handle.pid, init} <= members and len(members) >= 4, members  # bwrap, init, the stub, the agent
    assert open(f"/proc/{handle.pid}/comm").read().strip() == "bwrap"
    assert await rt.alive(handle)
    os.kill(init, signal.SIGKILL)
    await _until_empty(group, set(), "its pid 1 died")
    assert not await rt.alive(handle)


@pytest.mark.bwrap
async def test_a_bwrap_sandbox_killed_by_its_handle_ends_whole(make_runtime, new_spec, sandboxes):
    """What release kills before the teardown: bwrap's group and its pid 1's. bwrap's parent is the
    zygote, so nothing dies with bwrap; killing it alone would leave the sandbox running."""
    from rock.runtime import cgroups

    rt = make_runtime("bwrap")
    handle = await sandboxes(rt, new_spec())
    group = cgroups.Cgroup(handle.runtime_id)
    assert len(group.pids()) >= 4
    assert rt._kill(handle)
    await _until_empty(group, set(), "its handle's kill")
    assert not await rt.alive(handle)


@pytest.mark.docker
@pytest.mark.bwrap
async def test_stats_come_from_the_sandbox_cgroup(isolated_runtime, new_spec, sandboxes):
    handle = await sandboxes(isolated_runtime, new_spec(memory_bytes=256 << 20, pids_limit=100, cpus=0.5))
    stats = await isolated_runtime.stats(handle)
    assert stats.memory_limit_bytes == 256 << 20
    assert stats.pids_limit == 100
    assert stats.pids >= 1 and stats.memory_bytes > 0 and stats.cpu_seconds > 0


@pytest.mark.bwrap
@pytest.mark.docker
async def test_bwrap_runs_a_docker_image_or_a_rootfs_directory(make_runtime, new_spec, sandboxes, agent):
    from rock.runtime.docker import DockerRuntime

    if DockerRuntime.available():
        pytest.skip("needs a local Docker engine to export the image from")
    rt = make_runtime("bwrap")
    image = rt.settings.default_image
    handle = await sandboxes(rt, new_spec(image=image))
    rootfs = handle.extra["image_root"]
    # unpacked once into the images dir: the session's one (ROCK_IMAGES_DIR, tests/conftest.py)
    assert rootfs.startswith(str(rt.settings.images_path) + "/") and rt.settings.images_dir is not None
    from_dir = await sandboxes(rt, new_spec(image=rootfs))
    for h in (handle, from_dir):
        async with agent(h) as client:
            # The image's files, not the host's (this test file is not in the image); writes go
            # to the sandbox's own layer.
            result = await client.exec(["sh", "-c", 'test ! -e "$0" && echo x > /usr/local/mine && ls /usr/local/mine',
                                        os.path.abspath(__file__)])
            assert result.stdout == "/usr/local/mine\n", result
    assert not os.path.exists(os.path.join(rootfs, "usr/local/mine"))  # the image itself is untouched


async def test_an_awkward_sandbox_id(runtime, new_spec, agent):
    """Ids are the caller's (no '/' and no leading '.'); spaces, ':' and ',' must not break a backend."""
    handle = await runtime.create(new_spec(sandbox_id="odd id:1,2"))
    try:
        async with agent(handle) as client:
            assert (await client.exec("echo $ROCK_SANDBOX_ID", shell=True)).stdout == "odd id:1,2\n"
    finally:
        await runtime.destroy(handle)
    assert not await runtime.alive(handle)


def _tiny_rootfs_tar(dest: str) -> None:
    """A root filesystem tar with just sh, bash and the libraries the host interpreter loads:
    enough for the agent (the interpreter itself comes from the host, mounted read-only)."""
    import glob
    import tarfile

    binaries = ["/bin/sh", "/bin/bash", os.path.realpath(sys.executable)]
    binaries += glob.glob(os.path.join(os.path.dirname(os.__file__), "lib-dynload", "*.so"))
    libs = set()
    for path in binaries:
        out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        libs.update(part for line in out.splitlines() for part in line.split() if part.startswith("/"))
    with tarfile.open(dest, "w") as tar:
        for d in ("tmp", "root", "etc", "proc", "dev", "sys", "usr/local"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path in ["/bin/sh", "/bin/bash", *libs]:
            tar.add(os.path.realpath(path), arcname=path.lstrip("/"))


@pytest.mark.bwrap
async def test_bwrap_runs_a_rootfs_tar(make_runtime, new_spec, sandboxes, agent, tmp_path):
    rt = make_runtime("bwrap")
    image = str(tmp_path / "tiny.tar")
    _tiny_rootfs_tar(image)
    handle = await sandboxes(rt, new_spec(image=image))
    async with agent(handle) as client:
        result = await client.exec("test ! -e /usr/bin/python3 && test -x /bin/bash && echo tiny", shell=True)
    assert result.stdout == "tiny\n", result


@pytest.mark.docker
@pytest.mark.bwrap
async def test_an_unknown_image_is_a_clear_start_error(isolated_runtime, new_spec):
    spec = new_spec(image="rock-no-such-image:never")
    with pytest.raises(SandboxStartError, match="rock-no-such-image"):
        await isolated_runtime.create(spec)
    assert not (isolated_runtime.sandboxes_dir / spec.sandbox_id).exists()
