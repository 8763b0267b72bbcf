"""The real, unmodified ``e2b`` SDK against a real admin: each version in a venv of its own
(2.7.0: the oldest with E2B_SANDBOX_URL and the access-token fallback; 2.50.0: the last with
``POST /sandboxes``; the newest 2.x), sync and async, on docker and bwrap. The scenarios
(scenario_sync.py, scenario_async.py) run inside the venv and print their OK line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench.venvs import E2B_NEWEST_IMPORTS, E2B_NEWEST_PACKAGES, VenvError, client_python
from tests.admin.harness import Admin

HERE = Path(__file__).parent
VENV_ROOT = Path(os.environ.get("ROCK_TEST_E2B_VENVS") or "/tmp")
VERSIONS = {"2.7.0": ["e2b==2.7.0"], "2.50.0": ["e2b==2.50.0"], "newest": E2B_NEWEST_PACKAGES}
# what a cached venv must import to be reused: the benchmark (bench/e2b.py) makes /tmp/e2b-newest too,
# so a venv another run made is checked for every package of the set, not just e2b
IMPORTS = {"2.7.0": "import e2b", "2.50.0": "import e2b", "newest": E2B_NEWEST_IMPORTS}


def e2b_python(version: str) -> Path:
    """The venv's python, made (from PyPI) on first use and cached across runs."""
    try:
        return client_python(VENV_ROOT / f"e2b-{version}", VERSIONS[version], IMPORTS[version])
    except VenvError as exc:
        pytest.fail(str(exc))


def run_scenario(python: Path, admin: Admin, script: str, done: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("E2B_")}
    env.update(E2B_API_KEY="e2b-token-a", OTHER_KEY="e2b-token-b", E2B_API_URL=admin.url, E2B_SANDBOX_URL=admin.url,
               TEMPLATE="base", E2B_VENV=str(python.parent.parent))
    proc = subprocess.run([str(python), "-I", str(HERE / script)], env=env, capture_output=True, text=True,
                          timeout=500, cwd=tmp_path)
    assert proc.returncode == 0 and done in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_real_e2b_sdk(e2b_admin, version, mode, tmp_path):
    python = e2b_python(version)
    run_scenario(python, e2b_admin, f"scenario_{mode}.py", f"E2B {mode.upper()} OK", tmp_path)
    # nothing of the scenario's outlives it: every sandbox it made was killed through the SDK
    live = [r for r in e2b_admin.ctx.sandboxes.records.values() if r.state in ("pending", "running")]
    assert live == [], [r.sandbox_id for r in live]


def test_real_e2b_code_interpreter(e2b_admin, tmp_path):
    """The newest e2b-code-interpreter: run_code's stdout, stderr, results (text, png, html),
    errors and contexts, through the agent's code contexts."""
    run_scenario(e2b_python("newest"), e2b_admin, "scenario_interpreter.py", "E2B INTERPRETER OK", tmp_path)
