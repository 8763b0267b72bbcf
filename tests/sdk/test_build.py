"""A sandbox from a Dockerfile (SDK config field) and from a build context (`rock image build`),
on docker and bwrap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import docker

from rock.sdk.sandbox import Sandbox
from tests.sdk.test_sandbox import config

DOCKERFILE = "FROM python:3.11\nRUN echo built-by-rock > /built.txt\nENV ROCK_BUILT=yes\n"


async def test_sandbox_from_a_dockerfile(admin):
    sandbox = Sandbox(config(admin, dockerfile=DOCKERFILE))
    await sandbox.start()
    try:
        status = await sandbox.get_status()
        assert status.image.startswith("rock-build/")
        assert (await sandbox.arun("cat /built.txt; echo $ROCK_BUILT")).output.split() == ["built-by-rock", "yes"]
    finally:
        await sandbox.delete()
    again = Sandbox(config(admin, dockerfile=DOCKERFILE))  # same content: the same image, not built again
    await again.start()
    assert (await again.get_status()).image == status.image
    await again.delete()


def test_rock_image_build_cli_and_context(admin, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('from the context')\n")
    (tmp_path / "Dockerfile").write_text("FROM python:3.11\nCOPY app /opt/app\n")
    tag = f"rock-test-build/{os.getpid()}-{admin.backend}:v1"
    env = {**os.environ, "ROCK_BASE_URL": admin.url}
    try:
        proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "image", "build", str(tmp_path),
                               "-t", tag], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["image"] == tag and any("COPY app" in s for s in result["steps"])
        sandbox = Sandbox(config(admin, image=tag))
        import asyncio

        async def run():
            await sandbox.start()
            try:
                return (await sandbox.arun("python3 /opt/app/main.py")).output.strip()
            finally:
                await sandbox.delete()

        assert asyncio.run(run()) == "from the context"
        taken = subprocess.run([sys.executable, "-m", "rock.cli.main", "image", "build", str(tmp_path), "-t",
                                "python:3.11"], capture_output=True, text=True, env=env, timeout=60)
        assert taken.returncode == 1 and "already exists" in taken.stderr
        bad = subprocess.run([sys.executable, "-m", "rock.cli.main", "image", "build", str(tmp_path / "app")],
                             capture_output=True, text=True, env=env, timeout=60)
        assert bad.returncode == 1 and "has no Dockerfile" in bad.stderr
    finally:
        try:
            docker.from_env().api.remove_image(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
