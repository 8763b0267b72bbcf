"""The real rl-rock SDK, in its own virtual environment, against our admin: the arbiter of
wire compatibility. The venv is built once (from PyPI) and cached under the temp dir."""

from __future__ import annotations

import os
import subprocess

from bench.venvs import RLROCK_VENV

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
    assert r.output == "Hello ROCK" and r.exit_code == 0, r  # stripped, as ROCK's runtime returns it
    # rl-rock puts cmd after "nohup" unquoted: give it one simple command
    r = await sandbox.arun(cmd="echo from-nohup", session="bash-1", mode="nohup", wait_interval=1)
    assert r.output == "from-nohup" and r.exit_code == 0, r  # read back with `cat`: stripped too
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


def run_rlrock(python, admin, tmp_path, code: str, done: str, **env_vars) -> None:
    """Run ``code`` with the real rl-rock SDK against ``admin``; it prints ``done`` when all passed."""
    script = tmp_path / "rl.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ROCK_BASE_URL=admin.url, RLROCK_VENV=str(RLROCK_VENV), **env_vars)
    proc = subprocess.run([python, "-I", str(script)], env=env, capture_output=True, text=True, timeout=400,
                          cwd=tmp_path)
    assert proc.returncode == 0 and done in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_real_rl_rock_sdk_against_our_admin(admin, rlrock_python, tmp_path):
    run_rlrock(rlrock_python, admin, tmp_path, SCRIPT, "RL-ROCK OK")


LIFECYCLE_AND_HELPERS = r'''
import asyncio, os, tempfile
from rock.actions import CreateBashSessionRequest, ReadFileRequest
from rock.actions.sandbox.request import ChmodRequest, ChownRequest
from rock.actions.sandbox.response import CommitPhase, State
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig

async def main():
    import rock.sdk.sandbox.client as client_module
    assert os.environ["RLROCK_VENV"] in client_module.__file__, client_module.__file__
    sandbox = Sandbox(SandboxConfig(image="python:3.11", memory="512m", cpus=1, auto_clear_seconds=600))
    await sandbox.start()
    # stop keeps the files, restart brings them back
    await sandbox.write_file_by_path("kept by stop\n", "/root/kept.txt")
    await sandbox.stop()
    status = await sandbox.get_status(include_all_states=True)
    assert status.state == State.STOPPED and not status.is_alive and status.auto_delete_time, status
    await sandbox.restart()
    assert (await sandbox.read_file(ReadFileRequest(path="/root/kept.txt"))).content == "kept by stop\n"
    # sandbox.fs
    src = tempfile.mkdtemp()
    os.makedirs(os.path.join(src, "sub"))
    open(os.path.join(src, "sub", "f.txt"), "w").write("in a dir")
    r = await sandbox.fs.upload_dir(src, "/data")
    assert r.exit_code == 0, r
    assert (await sandbox.read_file(ReadFileRequest(path="/data/sub/f.txt"))).content == "in a dir"
    assert (await sandbox.fs.chmod(ChmodRequest(paths=["/data/sub/f.txt"], mode="600"))).success
    assert (await sandbox.fs.chown(ChownRequest(remote_user="daemon", paths=["/data/sub/f.txt"]))).success
    r = await sandbox.arun("stat -c %a:%U /data/sub/f.txt", session=None)
    assert r.output == "600:daemon", r
    # process, nohup helpers, line ranges
    r = await sandbox.process.execute_script("echo scripted", wait_timeout=60, wait_interval=1)
    assert "scripted" in r.output and r.exit_code == 0, r
    await sandbox.create_session(CreateBashSessionRequest(session="n"))
    pid, err = await sandbox.start_nohup_process("true", "/tmp/n.out", "n")
    assert err is None and pid, (pid, err)
    ok, message = await sandbox.wait_for_process_completion(pid, "n", wait_timeout=30, wait_interval=5)
    assert ok, message
    await sandbox.write_file_by_path("".join("l%d\n" % i for i in range(1, 8)), "/tmp/lines.txt")
    assert (await sandbox.read_file_by_line_range("/tmp/lines.txt", 2, 3)).content == "l2\nl3\n"
    if os.environ.get("COMMIT_TAG"):  # commit: a new sandbox starts from the image with the files
        status = await sandbox.commit(os.environ["COMMIT_TAG"], "user", "password", interval=0.5)
        assert status.phase == CommitPhase.SUCCEEDED, status
        second = Sandbox(SandboxConfig(image=os.environ["COMMIT_TAG"], memory="512m", cpus=1))
        await second.start()
        assert (await second.read_file(ReadFileRequest(path="/data/sub/f.txt"))).content == "in a dir"
        await second.delete()
    await sandbox.delete()
    print("RL-ROCK LIFECYCLE OK")

asyncio.run(main())
'''


def test_real_rl_rock_lifecycle_and_helpers(admin, rlrock_python, tmp_path):
    import uuid

    import docker

    tag = f"rock-test-rlcommit/{uuid.uuid4().hex[:8]}:v1"
    # bwrap's commit (a full image export and unpack) is covered in test_lifecycle
    extra = {"COMMIT_TAG": tag} if admin.backend == "docker" else {}
    try:
        run_rlrock(rlrock_python, admin, tmp_path, LIFECYCLE_AND_HELPERS, "RL-ROCK LIFECYCLE OK", **extra)
    finally:
        try:
            docker.from_env().api.remove_image(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
