"""GPU sandboxes on a machine without a GPU: the refusals, and the hand-out path run for real up to
the point where the device must exist (a node told it has GPU 0 tries to give /dev/nvidia0 to
the sandbox, bwrap cannot find it, the start fails with that reason and the GPU is free again)."""

from __future__ import annotations

import asyncio
import glob

import httpx
import pytest

from rock.errors import BadRequest, Conflict
from rock.runtime.base import SandboxSpec
from rock.runtime.gpus import Gpus, detect, wanted
from tests.admin.harness import Admin
from tests.worker.conftest import new_worker

pytestmark = pytest.mark.bwrap


def test_this_machine_reports_no_gpu():
    if glob.glob("/dev/nvidia[0-9]*"):
        pytest.skip("this machine has a GPU: tests/worker/test_gpu_sandbox.py runs instead")
    assert detect() == {}  # no nvidia-smi answer, no /dev/nvidiaN here


def test_whole_gpus_one_sandbox_each():
    gpus = Gpus("0,1")
    assert gpus.take(1, "a") == [0] and gpus.take(1, "b") == [1]
    with pytest.raises(Conflict, match="0 of this node's 2 are free"):
        gpus.take(1, "c")
    gpus.release([0])
    assert gpus.take(1, "c") == [0]
    assert gpus.visible([0, 1]) == "0,1"
    with pytest.raises(BadRequest, match="whole number"):
        wanted(0.5)


def test_embedded_admin_refuses_a_gpu_sandbox():
    admin = Admin("bwrap").start()
    try:
        reply = httpx.post(admin.url + "/apis/envs/sandbox/v1/start", json={"num_gpus": 1, "memory": "256m"}, timeout=60)
        assert reply.status_code == 400, reply.text
        assert "asks for 1 GPU(s); this machine has 0 (no GPU found" in reply.json()["message"]
        assert httpx.get(admin.url + "/apis/envs/sandbox/v1/sandboxes", timeout=60).json()["result"]["total"] == 0
        # Without Ray the cluster view is this one machine.
        view = httpx.get(admin.url + "/apis/envs/sandbox/v1/cluster/status", timeout=60).json()["result"]
        assert view["mode"] == "embedded" and [n["name"] for n in view["nodes"]] == ["local"]
        assert view["nodes"][0]["capacity"]["gpus"] == 0 and view["nodes"][0]["backend"] == "bwrap"
    finally:
        admin.stop(stop_sandboxes=True)


async def test_gpu_handed_to_the_sandbox_and_back_on_failure():
    worker = new_worker("bwrap", gpus="0", allow_host_paths=True)  # specs without an image: the host root
    await worker.start()
    try:
        spec = SandboxSpec(sandbox_id="gpu-1", gpus=1, memory_bytes=256 << 20)
        with pytest.raises(Exception, match="/dev/nvidia0"):
            await worker.create(spec)
        assert worker.gpus.free == 1  # released after the failed start
        with pytest.raises(BadRequest, match="this machine has 1"):
            worker.check(SandboxSpec(sandbox_id="gpu-2", gpus=2))
    finally:
        await worker.close(stop_sandboxes=True)


async def test_a_slow_zygote_still_reports_why_bwrap_gave_up():
    """bwrap fails on the missing device before the zygote forks the agent: the fork into the
    dead pid namespace fails (ENOMEM), and the reason shown must still be bwrap's."""
    worker = new_worker("bwrap", gpus="0", allow_host_paths=True)  # specs without an image: the host root
    await worker.start()
    zygote = worker.runtime.zygote
    if zygote is None:
        pytest.skip("this bwrap runtime starts agents without the zygote")
    spawn = zygote.spawn

    async def late_spawn(request):
        await asyncio.sleep(0.5)  # a zygote busy with other sandboxes' forks
        return await spawn(request)

    zygote.spawn = late_spawn
    try:
        with pytest.raises(Exception, match="/dev/nvidia0"):
            await worker.create(SandboxSpec(sandbox_id="gpu-3", gpus=1, memory_bytes=256 << 20))
        assert worker.gpus.free == 1
    finally:
        zygote.spawn = spawn
        await worker.close(stop_sandboxes=True)


def test_docker_gets_a_device_request_for_exactly_its_gpus(settings):
    from rock.runtime.docker import DockerRuntime

    reason = DockerRuntime.available()
    if reason:
        pytest.skip(reason)
    config = DockerRuntime(settings, "gpu-test")._config(SandboxSpec(sandbox_id="g", gpu_ids=[2, 3]), "/tmp/run")
    [request] = config["host_config"]["DeviceRequests"]
    assert request["DeviceIDs"] == ["2", "3"] and request["Capabilities"] == [["gpu"]]
