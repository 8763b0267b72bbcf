"""One env image build per tag on the host: two processes with state dirs of their own asking for
the same image at once build it once, the other waiting and finding it (the engine's tags are the
host's, so the build lock is too)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import SESSION_ROOT

pytestmark = pytest.mark.docker

ENSURE = r"""
import asyncio, json, sys
from rock.config import Settings
from rock.envs.images import EnvImageSpec, ImageBuilder

state, marker = sys.argv[1], sys.argv[2]
spec = EnvImageSpec(base="python:3.11", files={"marker.txt": marker})
built = asyncio.run(ImageBuilder(state, settings=Settings(state_dir=state)).ensure(spec))
print(json.dumps({"tag": built.tag, "built": built.built}))
"""


def test_two_processes_with_their_own_state_dirs_build_one_image_once(tmp_path):
    import docker

    marker = tmp_path / "marker.txt"
    marker.write_text(uuid.uuid4().hex)  # a content of its own: an image no earlier run made
    root = Path(__file__).resolve().parents[2]
    states = [tempfile.mkdtemp(prefix="s", dir=SESSION_ROOT) for _ in range(2)]  # short: the sockets' paths
    procs = [subprocess.Popen([sys.executable, "-c", ENSURE, state, str(marker)], cwd=root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for state in states]
    outs = [p.communicate(timeout=600) for p in procs]
    for state in states:
        shutil.rmtree(state, ignore_errors=True)
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    try:
        assert results[0]["tag"] == results[1]["tag"]
        assert sorted(r["built"] for r in results) == [False, True], results  # built once, found once
    finally:
        docker.from_env().images.remove(results[0]["tag"], force=True)
