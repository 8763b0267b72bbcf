"""rl-rock's SDK helpers through our SDK (sandbox.fs / .process / .network, the nohup helpers,
read_file_by_line_range) and rl-rock's import paths, against a real admin per backend."""

from __future__ import annotations

import pytest

from rock.actions import ChmodRequest, ChownRequest, CreateBashSessionRequest
from rock.sdk.sandbox.speedup.types import SpeedupType
from tests.sdk.test_sandbox import box  # noqa: F401 - the fixture


async def test_fs_helpers(box, tmp_path):
    local = tmp_path / "tree"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("A")
    (local / "sub" / "b.bin").write_bytes(b"\x00\xff")
    await box.write_bytes("/data/stale.txt", b"gone after upload_dir")
    r = await box.fs.upload_dir(local, "/data")
    assert r.exit_code == 0, r
    listing = (await box.arun("cd /data && find . -type f | sort")).output.split()
    assert listing == ["./a.txt", "./sub/b.bin"]  # replaced, not merged
    assert (await box.fs.upload_dir(tmp_path / "nope", "/data")).exit_code == 1
    assert (await box.fs.upload_dir(local, "relative")).failure_reason.startswith("target_dir must be absolute")

    assert (await box.fs.chmod(ChmodRequest(paths=["/data"], mode="700", recursive=True))).success
    assert (await box.arun("stat -c %a /data/sub/b.bin")).output.strip() == "700"
    assert (await box.fs.chown(ChownRequest(remote_user="daemon", paths=["/data/a.txt"]))).success
    assert (await box.arun("stat -c %U:%G /data/a.txt")).output.strip() == "daemon:daemon"
    failed = await box.fs.chown(ChownRequest(remote_user="no-such-user", paths=["/data/a.txt"]))
    assert not failed.success and "no-such-user" in failed.message

    got = await box.fs.download_file("/data/sub/b.bin", tmp_path / "b.bin")
    assert got.success and (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    missing = await box.fs.download_file("/data/none", tmp_path / "none")
    assert not missing.success and "/data/none" in missing.message


async def test_process_network_and_nohup_helpers(box):
    r = await box.process.execute_script("#!/bin/bash\necho from-script; exit 3", script_name="t.sh")
    assert "from-script" in r.output and r.exit_code == 3
    assert (await box.arun("test -e /tmp/t.sh; echo $?")).output.strip() == "1"  # cleaned up

    assert (await box.network.speedup(SpeedupType.PIP, "https://mirror.example.org")).exit_code == 0
    assert "index-url = https://mirror.example.org/pypi/simple/" in (await box.read_bytes("/etc/pip.conf")).decode()
    assert (await box.network.speedup(SpeedupType.APT, "http://mirror.example.org")).exit_code == 0
    sources = (await box.read_bytes("/etc/apt/sources.list")).decode()
    assert "deb http://mirror.example.org/debian/ bookworm main" in sources
    assert (await box.network.speedup(SpeedupType.GITHUB, "10.1.2.3")).exit_code == 0
    assert "10.1.2.3 github.com" in (await box.read_bytes("/etc/hosts")).decode()
    assert (await box.network.speedup(SpeedupType.GITHUB, "not-an-ip")).exit_code == 1

    await box.create_session(CreateBashSessionRequest(session="n"))
    pid, failed = await box.start_nohup_process("sleep 0.3", "/tmp/n.out", "n")
    assert failed is None and isinstance(pid, int)
    ok, message = await box.wait_for_process_completion(pid, "n", wait_timeout=30, wait_interval=1)
    assert ok, message
    pid, _ = await box.start_nohup_process("sleep 30", "/tmp/n.out", "n")
    ok, message = await box.wait_for_process_completion(pid, "n", wait_timeout=0.5, wait_interval=1)
    assert not ok and "did not complete" in message
    r = await box.run_nohup_and_wait("sh -c 'echo done > /tmp/w.out'", wait_timeout=30)
    assert r.success, r
    assert (await box.read_bytes("/tmp/w.out")) == b"done\n"

    await box.write_bytes("/tmp/lines.txt", "".join(f"line{i}\n" for i in range(1, 11)).encode())
    assert (await box.read_file_by_line_range("/tmp/lines.txt", 3, 4)).content == "line3\nline4\n"
    assert (await box.read_file_by_line_range("/tmp/lines.txt", 9)).content == "line9\nline10\n"
    with pytest.raises(Exception, match="start_line"):
        await box.read_file_by_line_range("/tmp/lines.txt", 0)


def test_rl_rock_import_paths():
    import rock
    from rock import codes
    from rock.actions import (ChmodRequest, ChownRequest, CommitPhase, CommitStatusResponse, DownloadFileResponse,
                              EnvMakeRequest, EnvStepResponse)
    from rock.actions.sandbox.request import Command
    from rock.actions.sandbox.response import Observation, SandboxStatusResponse

    assert codes.BAD_REQUEST == 4000 and codes.is_client_error(4000) and codes.get_reason_phrase(2000) == "OK"
    assert rock.codes is codes
    assert ChmodRequest(paths=["/x"]).mode == "755" and ChownRequest(remote_user="u").recursive is False
    assert CommitPhase("RUNNING") is CommitPhase.RUNNING and "phase" in CommitStatusResponse.model_fields
    assert not DownloadFileResponse().success and EnvMakeRequest(env_id="x").env_id == "x"
    assert EnvStepResponse(observation=1, reward=0.5, terminated=False, truncated=False).reward == 0.5
    assert Command(command="ls").timeout == 1200 and Observation().exit_code is None
    fields = SandboxStatusResponse.model_fields
    assert {"archive_time", "auto_archive_time", "auto_delete_time", "metadata"} <= set(fields)
