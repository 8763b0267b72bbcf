"""ROCK's configuration as its users have it: `rock admin start --env NAME` reading
rock-conf/rock-NAME.yml, ROCK_* variables, and the CLI's global flags and .rock/config.ini."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rock.config import Settings
from rock.errors import BadRequest
from tests.admin.harness import free_port
from tests.conftest import SESSION_ROOT

YAML = """
_base: rock-base.yml
lifecycle:
  auto_transition: {auto_delete_seconds: 77, auto_clear_seconds: 123}
runtime:
  max_allowed_spec: {cpus: 2, memory: 2g}
warmup: {images: ["python:3.11"]}
ray: {address: "ray://somewhere:10001", namespace: xrl}
redis: {host: redis.internal, port: 6379}
"""
BASE = """
runtime:
  standard_spec: {memory: 768m, cpus: 1}
oss: {bucket: nothing-here}
"""


def rock(*args, cwd=None, check=True, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _conf(tmp: Path) -> None:
    (tmp / "rock-conf").mkdir()
    (tmp / "rock-conf" / "rock-citest.yml").write_text(YAML)
    (tmp / "rock-conf" / "rock-base.yml").write_text(BASE)


def test_yaml_sections_apply_or_are_reported(tmp_path, monkeypatch, caplog):
    from rock import config_rock

    _conf(tmp_path)
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env="citest")
    config_rock.report(s)
    assert (s.auto_delete_seconds, s.default_auto_clear_seconds, s.max_cpus, s.max_memory) == (77, 123, 2, "2g")
    assert (s.default_memory, s.default_cpus) == ("768m", 1)  # from the _base file
    assert {"ray.address", "ray.namespace", "redis.host", "oss.bucket"} <= set(s.rock_config_ignored)
    assert "ignored (no meaning here): oss, ray, redis" in caplog.text
    with pytest.raises(BadRequest, match="rock-nope.yml does not exist"):
        Settings.load(env="nope")


def test_rock_environment_variables(monkeypatch):
    monkeypatch.setenv("ROCK_ADMIN_ROLE", "read")
    monkeypatch.setenv("ROCK_DEFAULT_AUTO_CLEAR_TIME_MINUTES", "7")
    monkeypatch.setenv("ROCK_SANDBOX_STARTUP_TIMEOUT_SECONDS", "45")
    s = Settings.load()
    assert (s.role, s.default_auto_clear_seconds, s.default_startup_timeout) == ("proxy", 420, 45)
    monkeypatch.setenv("ROCK_ADMIN_ROLE", "write")
    assert Settings.load().role == "admin"
    monkeypatch.setenv("ROCK_ADMIN_ROLE", "boss")
    with pytest.raises(BadRequest, match="ROCK_ADMIN_ROLE='boss'"):
        Settings.load()


def test_images_dir_is_the_state_dirs_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv("ROCK_IMAGES_DIR", raising=False)
    assert Settings(state_dir=tmp_path).images_path == tmp_path / "images"
    monkeypatch.setenv("ROCK_IMAGES_DIR", str(tmp_path / "shared"))
    assert Settings(state_dir=tmp_path / "a").images_path == Settings(state_dir=tmp_path / "b").images_path \
        == tmp_path / "shared"


def test_admin_start_env_and_cli_global_flags(admin):
    work = Path(tempfile.mkdtemp(prefix="c", dir=SESSION_ROOT))
    _conf(work)
    state = work / "state"
    state.mkdir()
    port = free_port()
    common = ["--state-dir", str(state), "--env", "citest"]
    rock("admin", "start", "--port", str(port), "--backend", admin.backend, *common, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        status = json.loads(rock("--json", "admin", "status", *common, cwd=work).stdout)
        assert status["settings"]["default_auto_clear_seconds"] == 123
        assert "ray.address" in status["settings"]["rock_config_ignored"]
        log_file = Path(status["log_file"])
        deadline = time.monotonic() + 60
        while "warmup: image python:3.11 is ready" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "warmup: image python:3.11 is ready" in log_file.read_text()
        assert "ignored (no meaning here): oss, ray, redis" in log_file.read_text()
        # the CLI's global flags, and .rock/config.ini in the working directory
        created = json.loads(rock("--json", "--base-url", url, "sandbox", "create", "--ttl", "0", "--cpus", "1",
                                  "--memory", "512m", cwd=work).stdout)
        sid = created["sandbox_id"]
        (work / ".rock").mkdir()
        (work / ".rock" / "config.ini").write_text(f"[rock]\nbase_url = {url}\n[rock.extra_headers]\nX-Test = 1\n")
        listed = json.loads(rock("--json", "sandbox", "list", cwd=work).stdout)
        assert sid in [i["sandbox_id"] for i in listed]
        other = work / "other.ini"
        other.write_text("[rock]\nbase_url = http://127.0.0.1:1\n")
        failed = rock("--config", str(other), "sandbox", "list", cwd=work, check=False)
        assert failed.returncode != 0  # --config wins over ./.rock/config.ini: nothing listens on port 1
        assert rock("--config", str(work / "missing.ini"), "sandbox", "list", cwd=work, check=False).returncode == 1
        # max_allowed_spec from the YAML is enforced
        too_big = rock("--base-url", url, "sandbox", "create", "--cpus", "4", cwd=work, check=False)
        assert too_big.returncode == 1 and "at most 2 cpus" in too_big.stderr
        verbose = rock("-vv", "--base-url", url, "sandbox", "stop", sid, cwd=work)
        assert "INFO" in verbose.stderr  # -vv: info logs (the HTTP client's requests)
        rock("--base-url", url, "sandbox", "restart", sid, cwd=work)
        rock("--base-url", url, "sandbox", "delete", sid, cwd=work)
    finally:
        rock("admin", "stop", *common, cwd=work, check=False)
