"""The verifier depends on nothing of the host's, says clearly when a task's tests cannot run, and
the job's CLI keeps the admin's URL and the policy's apart."""

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from rock.agentic.tasks import load_task
from rock.agentic.tasks.rollout import RolloutOptions, rollout
from rock.agentic.tasks.suites import open_suite
from tests.agentic_tasks.conftest import harbor_task

MARKER = "ROCK-HOST-PLUGIN-LOADED"
PLUGIN = textwrap.dedent(f"""
    import os
    import pytest

    def pytest_configure(config):
        print("{MARKER}", flush=True)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        out = yield
        if os.getcwd().startswith("/workspace"):  # only in a verifier: a host's own test runs stay honest
            report = out.get_result()
            report.outcome, report.longrepr = "passed", None
""")


@pytest.fixture
def host_plugin():
    """A pytest plugin installed into the host interpreter's site-packages (an entry point in the
    pytest11 group, as pip installs hypothesis' or schemathesis'), removed afterwards."""
    site = sysconfig.get_paths()["purelib"]
    module, info = os.path.join(site, "rock_host_evil.py"), os.path.join(site, "rock_host_evil-0.0.dist-info")
    os.makedirs(info)
    try:
        with open(module, "w") as f:
            f.write(PLUGIN)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: rock-host-evil\nVersion: 0.0\n")
        with open(os.path.join(info, "entry_points.txt"), "w") as f:
            f.write("[pytest11]\nrock_host_evil = rock_host_evil\n")
        with open(os.path.join(info, "RECORD"), "w") as f:
            f.write("")
        yield
    finally:
        os.unlink(module)
        for name in os.listdir(info):
            os.unlink(os.path.join(info, name))
        os.rmdir(info)


def test_a_pytest_plugin_installed_on_the_host_changes_no_reward(admin, suites, host_plugin, tmp_path):
    # The control: the host's own pytest does load it.
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert False\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_x.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert MARKER in proc.stdout and proc.returncode == 1, proc.stdout[-1000:]

    pypi = open_suite("pypi-bugs")
    tasks = [pypi.get(pypi.ids()[0]), open_suite("humaneval-repo").get("humaneval-000")]

    async def both():
        return await asyncio.gather(*(rollout(t, RolloutOptions(base_url=admin.url, policy=p))
                                      for t in tasks for p in ("null", "oracle")))

    recs = asyncio.run(both())
    got = {(r.task_id, r.policy): r.reward for r in recs}
    assert got == {(t.task_id, p): float(p == "oracle") for t in tasks for p in ("null", "oracle")}, got
    for r in recs:
        assert r.error is None and MARKER not in r.tests.output, r.tests.output[-500:]


def test_tests_that_cannot_import_their_runner_are_the_tasks_error(admin, suites, tmp_path):
    """A user's test.sh calling pytest in an image without it: an error naming the task and the
    cause, not a reward of 0."""
    t = harbor_task(tmp_path, "no-pytest")
    (t / "tests" / "test_calc.py").write_text("import calc\n\ndef test_add():\n    assert calc.add(2, 3) == 5\n")
    (t / "tests" / "test.sh").write_text("#!/bin/bash\ncd /workspace\ncp /tests/test_calc.py .\n"
                                         "python3 -m pytest -q test_calc.py && echo 1 > /logs/verifier/reward.txt\n")
    rec = asyncio.run(rollout(load_task(t), RolloutOptions(base_url=admin.url, policy="oracle")))
    assert rec.reward == 0.0 and rec.error, rec
    assert "task no-pytest" in rec.error and "No module named pytest" in rec.error, rec.error


def _rock(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_the_jobs_policy_url_is_its_own_flag(admin, suites, tmp_path):
    # the old spelling would have sent the admin's own calls to the model server: refused, saying why
    old = _rock("job", "run", "--url", admin.url, "--suite", "humaneval-repo", "--harness", "ours", "--policy",
                "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--task", "humaneval-000")
    assert old.returncode != 0 and "--policy-url" in old.stderr + old.stdout, old.stderr[-800:]
    # --policy-url names the model server (nothing listens there): every rollout fails, so the job does
    out = tmp_path / "job.jsonl"
    proc = _rock("--json", "job", "run", "--url", admin.url, "--suite", "humaneval-repo", "--harness", "ours",
                 "--policy", "openai", "--model", "m", "--policy-url", "http://127.0.0.1:9/v1",
                 "--task", "humaneval-000", "--out", str(out))
    rec = json.loads(out.read_text().splitlines()[0])
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert "127.0.0.1:9" in rec["error"] and "HTTP 404" not in rec["error"], rec["error"]
    # the control: the same job with a policy that answers exits 0
    ok = _rock("--json", "job", "run", "--url", admin.url, "--suite", "humaneval-repo", "--policy", "oracle",
               "--task", "humaneval-000", "--out", str(tmp_path / "ok.jsonl"))
    assert ok.returncode == 0 and json.loads(ok.stdout)["mean_reward"] == 1.0, ok.stderr[-1500:]
