"""Harbor 0.26, unchanged, in its own Python 3.12 venv, runs imported tasks on ROCK through
``--environment-import-path rock.integrations.harbor:RockEnvironment`` (ROCK's own SDK, no E2B
layer): an imported terminal-bench task and an imported SWE row, oracle 1.0 and nop 0.0, on docker
and bwrap."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.agentic_tasks.importer_fixtures import harbor, harbor_trials, imported_tasks  # noqa: F401

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return imported_tasks(tmp_path_factory.mktemp("harbor-tasks"))


@pytest.mark.parametrize("agent,reward", [("oracle", 1.0), ("nop", 0.0)])
def test_harbor_runs_imported_tasks_on_rock(admin, harbor, tasks, tmp_path, agent, reward):
    jobs = tmp_path / "jobs"
    # ROCK's SDK importable by Harbor's interpreter; litellm (a dependency of Harbor) kept off the network
    env = {**os.environ, "PYTHONPATH": str(SRC), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run([str(harbor), "run", "-p", str(tasks), "-a", agent,
                           "--environment-import-path", "rock.integrations.harbor:RockEnvironment",
                           "--ek", f"base_url={admin.url}", "-o", str(jobs), "--job-name", agent, "-n", "2", "-q"],
                          check=False, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    got = harbor_trials(jobs)
    assert got == {"acme__calc-1": (reward, None), "hello-file": (reward, None)}, \
        (got, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
