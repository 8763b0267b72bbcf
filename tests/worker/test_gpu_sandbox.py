"""A real GPU in a sandbox, where the machine has one: nvidia-smi and a CUDA computation inside a
bwrap sandbox given the GPU, and neither in one given none. Skipped on machines without a GPU
(this project's CI has none); tests/cluster/test_gpus.py covers the hand-out path there."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from rock.runtime.base import SandboxSpec
from rock.runtime.gpus import detect
from tests.worker.conftest import new_worker

pytestmark = [pytest.mark.bwrap, pytest.mark.skipif(not detect(), reason="no GPU here: nvidia-smi and /dev/nvidia* show none")]

GPU_CHECK = """
import torch
x = torch.ones(1024, 1024, device="cuda")
print("torch", torch.cuda.device_count(), torch.cuda.get_device_name(0), float((x @ x).sum()))
"""


async def test_a_real_gpu_is_handed_to_its_bwrap_sandbox_alone():
    smi = shutil.which("nvidia-smi")
    worker = new_worker("bwrap", allow_host_paths=True)  # specs without an image: the host root, its driver and CUDA
    await worker.start()
    try:
        index, uuid = min(worker.gpus.uuids.items())
        given = await worker.create(SandboxSpec(sandbox_id="gpu-real", gpus=1, memory_bytes=16 << 30))
        plain = await worker.create(SandboxSpec(sandbox_id="gpu-none", memory_bytes=1 << 30))
        assert worker.gpus.owner == {index: "gpu-real"}
        # The driver's libraries where the host finds them (a CUDA image's own environment says so).
        env = {"LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", "")}
        script = f'{smi} -L; echo "CVD=$CUDA_VISIBLE_DEVICES"; ls /dev | grep -c "^nvidia[0-9]"; exec "$0" -c "$1"'
        seen = {}
        for info in (given, plain):
            seen[info.sandbox_id] = await worker.agent(info.sandbox_id).exec(
                ["sh", "-c", script, sys.executable, GPU_CHECK], env=env, timeout=300)
        got = seen["gpu-real"]
        print(got.stdout, got.stderr)
        assert got.exit_code == 0, got
        lines = got.stdout.splitlines()
        assert any(uuid and uuid in line for line in lines), got  # nvidia-smi lists the host's GPU
        assert f"CVD={uuid or index}" in lines and "1" in lines, got  # named to CUDA; one device file
        assert any(line.startswith("torch 1 ") and line.endswith(" 1073741824.0") for line in lines), got
        none = seen["gpu-none"]  # the control: the same commands without a GPU given
        assert none.exit_code != 0 and "torch" not in none.stdout and "CVD=\n" in none.stdout + "\n", none
        assert "0" in none.stdout.splitlines(), none  # no GPU device file at all
    finally:
        await worker.close(stop_sandboxes=True)
    assert worker.gpus.free == worker.gpus.total
