"""Harbor 0.26, unchanged, with its own e2b environment (``harbor run -e e2b``, the e2b extra, in a
Python 3.12 venv of its own) pointed at a ROCK admin by E2B's variables alone and given no template:
Harbor builds each task's template through ROCK's ``/v3/templates`` and runs its trials on
sandboxes of it. Three tasks (an imported terminal-bench task, an imported SWE row, and a task of
a user's own from a plain image), oracle 1.0 and nop 0.0, on docker and bwrap."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest

from tests.agentic_tasks.importer_fixtures import harbor, harbor_trials, imported_tasks  # noqa: F401
from tests.e2b.conftest import TOKENS

KEY = next(iter(TOKENS))
TASKS = ("acme__calc-1", "hello-file", "answer-42")
OWN_TASK = {
    "instruction.md": "Write 42 into /app/answer.txt.\n",
    "task.toml": 'version = "1.0"\n[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 30.0\n'
                 '[environment]\ndocker_image = "python:3.11"\nnetwork_mode = "no-network"\n',
    "solution/solve.sh": "#!/bin/bash\nmkdir -p /app && echo 42 > /app/answer.txt\n",
    "tests/test.sh": "#!/bin/bash\nmkdir -p /logs/verifier\n"
                     "if [ \"$(cat /app/answer.txt 2>/dev/null)\" = 42 ]; then echo 1; else echo 0; fi"
                     " > /logs/verifier/reward.txt\n",
}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    out = imported_tasks(tmp_path_factory.mktemp("harbor-e2b-tasks"))
    for rel, text in OWN_TASK.items():
        (out / "answer-42" / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / "answer-42" / rel).write_text(text)
    return out


@pytest.fixture(scope="module")
def admin(e2b_admin):
    """The backend's E2B admin; the templates Harbor built there are deleted after the module (their images with them)."""
    yield e2b_admin
    for template in _templates(e2b_admin, KEY):
        if not template["names"][0].startswith("harbor-"):
            continue
        request = urllib.request.Request(f"{e2b_admin.url}/templates/{template['templateID']}", method="DELETE",
                                         headers={"X-API-KEY": KEY})
        urllib.request.urlopen(request, timeout=60).close()


@pytest.mark.parametrize("agent,reward", [("oracle", 1.0), ("nop", 0.0)])
def test_harbor_e2b_builds_its_templates_on_rock(admin, harbor, tasks, tmp_path, agent, reward):
    jobs = tmp_path / "jobs"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("E2B_")}
    env.update(E2B_API_KEY=KEY, E2B_API_URL=admin.url, E2B_SANDBOX_URL=admin.url,
               LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run([str(harbor), "run", "-p", str(tasks), "-a", agent, "-e", "e2b", "-o", str(jobs),
                           "--job-name", agent, "-n", "3", "-q"],
                          check=False, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    got = harbor_trials(jobs)
    want = {name: (reward, None) for name in TASKS}
    assert got == want, (got, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    # each task's template (Harbor names it harbor-<hash of the environment>) was built here, for the key's
    # namespace only
    built = [t["names"][0] for t in _templates(admin, KEY) if t["names"][0].startswith("harbor-")]
    assert len(built) == len(TASKS), built
    assert not [t for t in _templates(admin, "e2b-token-b") if t["names"][0].startswith("harbor-")]


def _templates(admin, key: str) -> list[dict]:
    request = urllib.request.Request(admin.url + "/templates", headers={"X-API-KEY": key})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())
