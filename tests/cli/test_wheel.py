"""An installed wheel works without the source tree: `uv build` of this checkout, installed into a
fresh venv, run from a directory far from the checkout. A smoke run per backend: `rock admin
start`, a sandbox and a command through the venv's SDK, the UI page with its browser assets,
`rock envs list`, `rock admin stop`; and ROCK's `admin --env local` console script."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.admin.harness import backend_params, free_port, terminate, wait_healthy
from tests.conftest import SESSION_ROOT

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ["pico.min.css", "xterm.js", "xterm.css", "addon-fit.js"]  # web/build.sh puts them in the package

SMOKE = """
import sys
from rock.sdk.sandbox.config import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox

with SyncSandbox(SandboxConfig(base_url=sys.argv[1], memory="512m", cpus=0.5)) as box:
    print(box.arun("echo from-the-wheel $((6 * 7))").output.strip())
    print(box.sandbox_id)
"""


def _env() -> dict:
    # Nothing of the checkout or of the interpreter that runs the tests leaks into the venv's runs.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "ROCK_CONFIG",
                                                             "ROCK_STATE_DIR", "ROCK_BASE_URL")}


def _run(argv: list, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert not check or proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv():
    """(venv bin dir, a working directory outside the checkout)."""
    if shutil.which("uv") is None:
        pytest.fail("uv is not installed; scripts/setup-host.sh installs it (python3 -m pip install uv)")
    missing = [f for f in VENDOR if not (ROOT / "src/rock/admin/ui/static/vendor" / f).is_file()]
    if missing:
        pytest.fail(f"the UI's browser assets are not built ({', '.join(missing)}): run web/build.sh first")
    work = Path(tempfile.mkdtemp(prefix="w", dir=SESSION_ROOT))
    dist = work / "dist"
    _run(["uv", "build", "--wheel", "--out-dir", dist, ROOT], cwd=work, timeout=900)
    wheel = next(dist.glob("rock_sandbox-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in [f"rock/admin/ui/static/vendor/{f}" for f in VENDOR] + [
            "rock/admin/ui/templates/base.html", "rock/conf/rock-local.yml", "rock/conf/rock-local-proxy.yml",
            "rock/agent/zygote.py", "rock/agent/envhost/host.py", "rock/agent/chat/modelcli.py", "rock/agent/bin/rock",
            "rock/envs/probe.py"]:
        assert needed in names, f"{needed} is not in {wheel.name}"
    _run(["uv", "venv", "--python", sys.executable, "--python-preference", "only-system", work / "venv"], cwd=work)
    _run(["uv", "pip", "install", "--python", work / "venv/bin/python", wheel], cwd=work, timeout=900)
    away = work / "elsewhere"
    away.mkdir()
    where = _run([work / "venv/bin/python", "-c", "import rock; print(rock.__file__)"], cwd=away).stdout.strip()
    assert where.startswith(str(work / "venv")), where  # the wheel's rock, not the checkout's
    yield work / "venv/bin", away
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("backend", backend_params())
def test_installed_wheel_smoke_run(venv, backend):
    from rock.runtime import get_runtime_class

    if reason := get_runtime_class(backend).available():
        pytest.skip(f"{backend}: {reason}")
    bin_dir, away = venv
    state = Path(tempfile.mkdtemp(prefix="ws", dir=SESSION_ROOT))
    common = ["--state-dir", state]
    started = json.loads(_run([bin_dir / "rock", "--json", "admin", "start", "--backend", backend,
                               "--port", free_port(), *common], cwd=away).stdout)
    url = started["url"]
    try:
        assert started["backend"] == backend
        out = _run([bin_dir / "python", "-c", SMOKE, url], cwd=away).stdout.split()
        assert out[:2] == ["from-the-wheel", "42"]
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 200 and "/ui/static/vendor/pico.min.css" in page.text
        for asset in VENDOR:
            assert httpx.get(f"{url}/ui/static/vendor/{asset}", timeout=30).status_code == 200, asset
        box_page = httpx.get(f"{url}/ui/sandboxes/{out[2]}", timeout=30)
        assert box_page.status_code == 200 and out[2] in box_page.text
        envs = _run([bin_dir / "rock", "envs", "--url", url, "list", "--quick", "--json"], cwd=away).stdout
        ids = {e["id"] for e in json.loads(envs)}
        assert "game:Sokoban-v0-easy" in ids, sorted(ids)[:20]
    finally:
        items = httpx.get(url + "/apis/envs/sandbox/v1/sandboxes", timeout=60).json()["result"]["items"]
        for item in items:
            httpx.post(url + "/apis/envs/sandbox/v1/delete", json={"sandbox_id": item["sandbox_id"]}, timeout=120)
        _run([bin_dir / "rock", "admin", "stop", *common], cwd=away)
    assert not (state / "admin.pid").exists()


@pytest.mark.bwrap
def test_installed_admin_script_env_local(venv):
    """ROCK's `admin --env local` from the wheel: the shipped config, in the foreground, Ctrl-C stops it."""
    bin_dir, away = venv
    state = Path(tempfile.mkdtemp(prefix="wa", dir=SESSION_ROOT))
    port = free_port()
    log = state / "fg.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(bin_dir / "admin"), "--env", "local", "--port", str(port), "--backend", "bwrap",
                                 "--state-dir", str(state)], cwd=away, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 120, log.read_text)
        status = json.loads(_run([bin_dir / "rock", "--json", "admin", "status", "--env", "local", "--state-dir", state],
                                 cwd=away).stdout)
        assert status["running"] and status["pid"] == proc.pid
        assert status["settings"]["rock_config_file"].startswith(str(bin_dir.parent))  # the wheel's copy
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        terminate(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
