"""Seed 001's server commands on one machine: `admin --env local` (ROCK's command, in the
foreground) with the shipped `local` config, and read/write separation as ROCK's example runs it:
`rock admin start --env local-proxy --role admin`, then `--role proxy`, on one state dir and its
embedded store. A sandbox's life: created through the admin; sessions, commands and files through
the proxy; stopped through the admin. Run from a directory without rock-conf/ (the shipped files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from rock.actions import CreateBashSessionRequest, ReadFileRequest, WriteFileRequest
from rock.errors import RockError, SandboxNotRunning
from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox
from tests.admin.harness import backend_params, free_port, terminate, wait_healthy
from tests.conftest import SESSION_ROOT

API = "/apis/envs/sandbox/v1"


def _rock(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _delete_all(url: str) -> None:
    """What a failed test left in the admin (the leak check runs at the session's end)."""
    listed = httpx.get(url + API + "/sandboxes", params={"page_size": 100}).json()["result"]["items"]
    for item in listed:
        if item.get("lifecycle_state") != "deleted":
            httpx.post(url + API + "/delete", json={"sandbox_id": item["sandbox_id"]}, timeout=120)


def _state() -> Path:
    state = Path(tempfile.mkdtemp(prefix="l", dir=SESSION_ROOT))
    return state


@pytest.mark.bwrap
def test_admin_env_local_starts_and_answers(tmp_path):
    """ROCK's `admin --env local`: the foreground server with the shipped rock-local.yml."""
    state, port = _state(), free_port()
    log = tmp_path / "admin.log"
    # The `admin` console script is rock.cli.main:admin_main (pyproject.toml); the wheel test runs
    # the installed script itself.
    cmd = [sys.executable, "-c", "import sys; from rock.cli.main import admin_main; sys.exit(admin_main())",
           "--env", "local", "--port", str(port), "--state-dir", str(state), "--backend", "bwrap"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 120, log.read_text)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()["result"]
        assert (health["role"], health["backend"], health["store"]) == ("admin", "bwrap", "sqlite")
        status = json.loads(_rock("--json", "admin", "status", "--env", "local", "--state-dir", str(state),
                                  cwd=tmp_path).stdout)
        assert status["running"] and status["pid"] == proc.pid
        assert status["settings"]["rock_config_file"].endswith("rock/conf/rock-local.yml")
        assert status["settings"]["default_memory"] == "1g"
        assert "ROCK config" in log.read_text() and "applied" in log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops a foreground server
        try:
            proc.wait(60)
        finally:
            terminate(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert proc.returncode in (0, 130, -signal.SIGINT), log.read_text()[-2000:]
    assert not (state / "admin.pid").exists()


def test_unknown_env_names_the_shipped_ones(tmp_path):
    proc = _rock("admin", "start", "--env", "nowhere", "--state-dir", str(tmp_path), cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "rock-nowhere.yml does not exist" in proc.stderr
    assert "local, local-proxy" in proc.stderr


@pytest.mark.parametrize("backend", backend_params())
def test_admin_and_proxy_on_one_machine(backend, tmp_path):
    from rock.runtime import get_runtime_class

    reason = get_runtime_class(backend).available()
    if reason:
        pytest.skip(f"{backend}: {reason}")
    state = _state()
    admin_port, proxy_port = free_port(), free_port()
    common = ["--env", "local-proxy", "--state-dir", str(state)]
    admin_url = json.loads(_rock("--json", "admin", "start", "--role", "admin", "--port", str(admin_port), *common,
                                 "--backend", backend, cwd=tmp_path).stdout)["url"]
    try:
        proxy = json.loads(_rock("--json", "admin", "start", "--role", "proxy", "--port", str(proxy_port), *common,
                                 "--backend", backend, cwd=tmp_path).stdout)
        proxy_url = proxy["url"]
        assert proxy["role"] == "proxy" and httpx.get(proxy_url + "/health").json()["result"]["store"] == "sqlite"
        again = _rock("admin", "start", "--role", "proxy", "--port", str(proxy_port), *common, cwd=tmp_path,
                      check=False)
        assert again.returncode == 1 and f"a proxy on port {proxy_port} already runs" in again.stderr
        status = json.loads(_rock("--json", "admin", "status", *common, cwd=tmp_path).stdout)
        assert status["running"] and status["proxies"] == [f"proxy-{proxy_port}"]

        # an id is a file name in the shared records dir: nothing a caller sends reaches one unrecorded
        for bad in ("../admin", ".hidden", "records/x", "x" * 300):
            r = httpx.post(proxy_url + API + "/execute", json={"sandbox_id": bad, "command": "id"})
            assert r.status_code in (404, 422), r.text  # 422: the schema's own limit (length)
            assert r.status_code == 422 or "not found" in r.text.lower(), r.text
            assert httpx.get(proxy_url + API + "/get_status", params={"sandbox_id": bad}).status_code in (404, 422)

        # created through the admin (after the proxy started: the proxy attaches on first use)
        made = SyncSandbox(SandboxConfig(base_url=admin_url, memory="512m", cpus=0.5))
        made.start()
        sid = made.sandbox_id
        # a proxy serves no writes of the control plane
        assert httpx.post(proxy_url + API + "/start", json={}).status_code == 404
        assert httpx.post(proxy_url + API + "/stop", json={"sandbox_id": sid}).status_code == 404

        via = SyncSandbox(SandboxConfig(base_url=proxy_url))
        via.attach(sid)
        assert via.get_status().is_alive
        via.create_session(CreateBashSessionRequest(session="rw"))
        assert via.arun(cmd="cd /tmp && export WHO=proxy", session="rw").exit_code == 0
        assert via.arun(cmd="echo $WHO in $(pwd)", session="rw").output.strip() == "proxy in /tmp"
        via.write_file(WriteFileRequest(content="written through the proxy", path="/tmp/rw.txt"))
        assert made.read_file(ReadFileRequest(path="/tmp/rw.txt")).content == "written through the proxy"
        local = tmp_path / "up.bin"
        local.write_bytes(os.urandom(300_000))
        assert via.upload_by_path(str(local), "/tmp/up.bin").success
        assert via.read_bytes("/tmp/up.bin") == local.read_bytes()
        assert made.arun(cmd="wc -c < /tmp/up.bin", session="default").output.strip() == "300000"

        # stopped through the admin: the proxy says so, and leaves the sandbox to the admin
        made.stop()
        with pytest.raises(SandboxNotRunning):
            via.arun(cmd="echo after", session="rw")
        assert not via.get_status().is_alive
        made.delete()
        with pytest.raises(RockError):
            via.arun(cmd="echo after delete", session="rw")
    finally:
        _delete_all(admin_url)
        stopped = json.loads(_rock("--json", "admin", "stop", *common, cwd=tmp_path).stdout)
    assert [p["name"] for p in stopped["processes"]] == [f"proxy-{proxy_port}", "admin"]
    assert not list(state.glob("*.pid"))
