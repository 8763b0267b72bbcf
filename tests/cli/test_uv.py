"""Seed 001's set-up with uv, so that path cannot break unseen: a copy of this checkout, `uv venv`
with the machine's Python (uv-managed interpreters are downloaded from the internet), `uv sync
--locked --all-extras` (uv.lock must agree with pyproject.toml), and `uv run pytest` on a small
subset. scripts/setup-host.sh installs uv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SESSION_ROOT

ROOT = Path(__file__).resolve().parents[2]


def _uv(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(["uv", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"uv {' '.join(args)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))


@pytest.mark.bwrap
def test_uv_sync_and_run_pytest():
    if shutil.which("uv") is None:
        pytest.fail("uv is not installed; scripts/setup-host.sh installs it (python3 -m pip install uv)")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the copy is made from `git ls-files`")
    work = Path(tempfile.mkdtemp(prefix="uv", dir=SESSION_ROOT)) / "ROCK"
    work.mkdir()
    _copy_checkout(work)
    _uv("venv", "--python", sys.executable, "--python-preference", "only-system", cwd=work)
    _uv("sync", "--locked", "--all-extras", cwd=work)
    subset = ["tests/cli/test_local_env.py", "-k", "unknown_env or admin_env_local"]
    run = _uv("run", "pytest", "-q", "-p", "no:cacheprovider", *subset, cwd=work, timeout=600)
    assert "2 passed" in run.stdout, run.stdout[-3000:]
    # The project runs from the copy's venv, not from whatever installed this interpreter's rock.
    where = _uv("run", "python", "-c", "import rock, sys; print(rock.__file__); print(sys.prefix)", cwd=work)
    module, prefix = where.stdout.split()
    assert module.startswith(str(work)) and prefix == str(work / ".venv")
    shutil.rmtree(work.parent, ignore_errors=True)
