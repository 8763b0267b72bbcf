"""The real rl-rock SDK, in its own virtual environment, against our admin: the arbiter of
wire compatibility. The venv is built once (from PyPI) and cached under the temp dir."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import RLROCK_VENV

SCRIPT = r'''
import asyncio, os, sys, tempfile
from rock.actions import CreateBashSessionRequest, ReadFileRequest, UploadRequest, WriteFileRequest
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig

async def main():
    import rock.sdk.sandbox.client as client_module
    assert os.environ["RLROCK_VENV"] in client_module.__file__, client_module.__file__  # the real rl-rock
    sandbox = Sandbox(SandboxConfig(image="python:3.11", memory="512m", cpus=1, auto_clear_seconds=600))
    await sandbox.start()
    print("started", sandbox.sandbox_id)
    await sandbox.create_session(CreateBashSessionRequest(session="bash-1"))
    r = await sandbox.arun(cmd="echo Hello ROCK", session="bash-1")
    assert r.output.strip() == "Hello ROCK" and r.exit_code == 0, r
    # rl-rock puts cmd after "nohup" unquoted: give it one simple command
    r = await sandbox.arun(cmd="echo from-nohup", session="bash-1", mode="nohup", wait_interval=1)
    assert "from-nohup" in r.output and r.exit_code == 0, r
    w = await sandbox.write_file(WriteFileRequest(content="written by rl-rock\n", path="/tmp/rl/w.txt"))
    assert w.success, w
    assert (await sandbox.read_file(ReadFileRequest(path="/tmp/rl/w.txt"))).content == "written by rl-rock\n"
    src = os.path.join(tempfile.mkdtemp(), "up.txt")
    open(src, "w").write("uploaded")
    u = await sandbox.upload(UploadRequest(source_path=src, target_path="/tmp/rl/up.txt"))
    assert u.success, u
    assert (await sandbox.read_file(ReadFileRequest(path="/tmp/rl/up.txt"))).content == "uploaded"
    assert (await sandbox.is_alive()).is_alive
    status = await sandbox.get_status()
    assert status.sandbox_id == sandbox.sandbox_id and status.state.value == "running"
    await sandbox.stop()
    print("RL-ROCK OK")

asyncio.run(main())
'''


def test_real_rl_rock_sdk_against_our_admin(admin, rlrock_python, tmp_path):
    script = tmp_path / "rl.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["ROCK_BASE_URL"] = admin.url
    env["RLROCK_VENV"] = str(RLROCK_VENV)
    proc = subprocess.run([rlrock_python, "-I", str(script)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0 and "RL-ROCK OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
