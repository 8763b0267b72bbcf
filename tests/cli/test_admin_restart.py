"""`rock admin start/stop/status` as a person runs them, and a restart that loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox
from tests.admin.harness import free_port
from tests.conftest import SESSION_ROOT


def rock(*args: str, env=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True,
                          timeout=300, env=env)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_sandboxes_and_files_survive_admin_restart(admin):
    state = Path(tempfile.mkdtemp(prefix="r", dir=SESSION_ROOT))
    port = str(free_port())
    common = ["--state-dir", str(state)]
    started = json.loads(rock("--json", "admin", "start", "--port", port, "--backend", admin.backend, *common).stdout)
    url = started["url"]
    try:
        status = json.loads(rock("--json", "admin", "status", *common).stdout)
        assert status["running"] and status["backend"] == admin.backend and status["health"]["role"] == "admin"

        box = SyncSandbox(SandboxConfig(base_url=url, memory="512m", cpus=1, auto_clear_seconds=3600))
        box.start()
        box.write_bytes("/root/work/notes.txt", b"keep me")
        box.arun("echo $$ > /tmp/agent-session-pid", session="default")
        sid = box.sandbox_id
        box.aclose()

        rock("admin", "stop", *common)
        assert rock("--json", "admin", "status", *common, check=False).returncode == 3
        rock("admin", "start", "--port", port, "--backend", admin.backend, *common)

        again = SyncSandbox(SandboxConfig(base_url=url))
        again.attach(sid)
        assert again.get_status().is_alive
        listed = json.loads(rock("--json", "sandbox", "--url", url, "list").stdout)
        assert [i["sandbox_id"] for i in listed] == [sid]
        assert again.read_bytes("/root/work/notes.txt") == b"keep me"
        assert again.arun("cat /root/work/notes.txt").output.strip() == "keep me"
        history = [h.event for h in again.get_status().state_history]
        assert history[:2] == ["create", "started"]
        again.delete()  # stop would keep its files (ROCK's stop); this test leaves nothing
    finally:
        rock("admin", "stop", *common, check=False)
    assert not (state / "admin.pid").exists()


def test_start_refuses_open_bind_without_tokens(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ROCK_TOKENS"}
    proc = rock("admin", "start", "--host", "0.0.0.0", "--state-dir", str(tmp_path), env=env, check=False)
    assert proc.returncode != 0 and "without API tokens" in proc.stderr
