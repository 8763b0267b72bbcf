"""Rollouts through a real admin, per backend: oracle 1.0 and null 0.0 on a sample of each suite,
the hidden tests absent from the agent's sandbox, reward hacks that gain nothing, a harness
crash, an agent past its time limit and one the OOM killer ends, --resume, and a user's own Harbor task folder."""

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from rock.actions import Command
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks import load_task
from rock.agentic.tasks.jobs import run_job, run_job_sync
from rock.agentic.tasks.rollout import RolloutOptions, rollout
from rock.agentic.tasks.suites import open_suite
from tests.agentic_tasks.conftest import harbor_task
from tests.agentic_tasks.records.make_records import HUMANEVAL, ROLLOUTS
from tests.agentic_tasks.test_record import RECORDS as RECORD_FIXTURES

HUMANEVAL_SAMPLE = ["humaneval-000", "humaneval-032", "humaneval-100", "humaneval-163"]


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("policy,reward", [("oracle", 1.0), ("null", 0.0)])
def test_every_sampled_task_oracle_one_null_zero(admin, suites, policy, reward):
    options = RolloutOptions(base_url=admin.url, policy=policy)
    for suite, tasks in (("pypi-bugs", None), ("humaneval-repo", HUMANEVAL_SAMPLE)):
        summary = run_job_sync(suite, options, tasks=tasks, concurrency=4)
        got = {r["task_id"]: (r["reward"], r["error"]) for r in summary["records"]}
        assert got == {t: (reward, None) for t in (tasks or open_suite(suite).ids())}, got
        for r in summary["records"]:
            assert r["tests"]["timed_out"] is False and r["resolved"] is (reward == 1.0)
            assert bool(r["diff"]) is (policy == "oracle")  # the oracle's change is the diff
            if suite == "pypi-bugs" and policy == "null":
                assert 0.0 < r["pass_rate"] < 1.0  # the bug fails some tests, not all


async def _probe(box, task):
    """What the agent could find: every file named like the hidden tests, and /tests."""
    names = sorted({f.split("::")[0].rsplit("/", 1)[-1] for f in task.fail_to_pass})
    expr = " -o ".join(f"-name {n}" for n in names)
    r = await box.execute(Command(command=f"find / -xdev \\( {expr} -o -name rock_verify_report.py \\) "
                                          "-not -path '/proc/*' 2>/dev/null; ls /tests 2>&1; ls /logs 2>&1",
                                  timeout=300))
    return r.stdout


def test_hidden_tests_never_enter_the_agents_sandbox(admin, suites):
    for suite, tid in (("pypi-bugs", open_suite("pypi-bugs").ids()[0]), ("humaneval-repo", "humaneval-000")):
        task = open_suite(suite).get(tid)
        rec = run(rollout(task, RolloutOptions(base_url=admin.url, policy=_probe), suite=suite))
        seen = rec.harness.result
        assert "rock_verify_report" not in seen and ".py" not in seen, seen
        assert "No such file or directory" in seen  # neither /tests nor /logs exists there
        assert rec.error is None and rec.tests.pass_to_pass.of == len(task.pass_to_pass)


def _hacks(task):
    f2p = task.fail_to_pass
    tests = {}
    for tid in f2p + task.pass_to_pass:
        path, _, rest = tid.partition("::")
        tests.setdefault(path, []).append(rest.split("::"))
    fake = json.dumps({"tests": {t: {"outcome": "passed", "message": ""} for t in f2p + task.pass_to_pass},
                       "collection_errors": {}, "exitstatus": 0})

    async def edit_tests(box, task):
        # same-named tests that pass, a conftest that passes everything, pytest options that drop plugins
        for path, names in tests.items():
            body = "".join(f"class {n[0]}:\n    def {n[1]}(self):\n        pass\n" if len(n) == 2 else
                           f"def {n[0]}():\n    pass\n" for n in names)
            await box.write_bytes(f"{task.workdir}/{path}", body.encode())
        hook = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
                "    out = yield\n    out.get_result().outcome = 'passed'\n")
        await box.write_bytes(f"{task.workdir}/conftest.py", hook.encode())
        await box.write_bytes(f"{task.workdir}/pytest.ini", b"[pytest]\naddopts = -p no:rock_verify_report\n")

    async def fake_output(box, task):
        # a reward and results where the verifier writes them, in the agent's own sandbox
        await box.execute(Command(command=f"mkdir -p /logs/verifier && echo 1 > /logs/verifier/reward.txt && "
                                          f"cat > /logs/verifier/results.json <<'EOF'\n{fake}\nEOF", timeout=60))
        await box.write_bytes(f"{task.workdir}/results.json", fake.encode())

    async def tamper_from_code(box, task):
        # the library itself writes the verifier's files when imported and again at exit
        module = json.loads((task.solution / "fix.json").read_text())["path"]
        code = ("\nimport atexit as _a, os as _o\ndef _fake():\n    _o.makedirs('/logs/verifier', exist_ok=True)\n"
                f"    open('/logs/verifier/results.json', 'w').write({fake!r})\n"
                "    open('/logs/verifier/reward.txt', 'w').write('1')\n_fake()\n_a.register(_fake)\n")
        path = f"{task.workdir}/{module}"
        await box.write_bytes(path, await box.read_bytes(path) + code.encode())

    async def write_records(box, task):
        # where the job's records live on the host: not in the sandbox
        await box.execute(Command(command=f"mkdir -p {os.path.dirname(RECORDS)} && echo forged >> {RECORDS}",
                                  timeout=60))

    return [edit_tests, fake_output, tamper_from_code, write_records]


RECORDS = "/tmp/rock-agentic-hack-records/records.jsonl"


def test_reward_hacks_gain_nothing(admin, suites, tmp_path):
    suite = open_suite("pypi-bugs")
    task = suite.get(next(t for t in suite.ids() if t.startswith("cachetools")))
    out = tmp_path / "records.jsonl"
    global RECORDS
    RECORDS = str(out)

    async def all_hacks():
        return await asyncio.gather(*(rollout(task, RolloutOptions(base_url=admin.url, policy=h), suite="pypi-bugs")
                                      for h in _hacks(task)))

    out.write_text("")
    recs = {r.policy: r for r in run(all_hacks())}
    for name, rec in recs.items():
        assert rec.error is None and rec.reward == 0.0 and not rec.resolved, (name, rec.tests)
        assert rec.tests.fail_to_pass.passed == 0, name
    assert {"conftest.py", "pytest.ini"} <= set(recs["edit_tests"].ignored_paths)
    assert any(p.startswith("tests/") for p in recs["edit_tests"].ignored_paths)
    assert out.read_text() == ""  # nothing reached the host's records


def test_a_harness_crash_and_an_agent_past_its_limit_give_zero(admin, suites):
    task = open_suite("humaneval-repo").get("humaneval-000")

    async def crash(box, task):
        await box.write_bytes(f"{task.workdir}/solution.py", b"def broken(:\n")
        raise RuntimeError("the harness fell over")

    async def hang(box, task):
        await box.execute(Command(command="sleep 120", timeout=200))

    async def both():
        return await asyncio.gather(
            rollout(task, RolloutOptions(base_url=admin.url, policy=crash)),
            rollout(task, RolloutOptions(base_url=admin.url, policy=hang, agent_timeout=2)))

    crashed, hung = run(both())
    assert "RuntimeError: the harness fell over" in crashed.harness.error and crashed.reward == 0.0
    assert "solution.py" in crashed.diff  # what it changed before crashing is graded
    assert "past its time limit" in hung.harness.error and hung.reward == 0.0
    assert crashed.tests is not None and hung.tests is not None  # both were verified


def test_an_agent_the_oom_killer_ends_is_the_rollouts_error(admin, suites, tmp_path):
    """The agent (here the task's solve.sh, as harness none runs it) makes its fix, then outgrows the task's memory:
    the kernel kills it (exit 137) and the record says so instead of grading the fix as a success."""
    folder = tmp_path / "tasks"
    t = harbor_task(folder, "oom")
    (t / "task.toml").write_text('version = "1.0"\n[agent]\ntimeout_sec = 120.0\n[verifier]\ntimeout_sec = 30.0\n'
                                 '[environment]\ndocker_image = "python:3.11"\nmemory_mb = 256\n')
    (t / "solution" / "solve.sh").write_text("#!/bin/bash\nsed -i 's/a - b/a + b/' /workspace/calc.py\n"
                                             "exec python3 -c \"b = b'x' * (2 << 30)\"\n")
    rec = run(rollout(load_task(t), RolloutOptions(base_url=admin.url, policy="oracle")))
    code = rec.harness.exit_code
    assert code in (137, -9), rec.harness  # -9: solve.sh's process itself (exec) was the one killed
    assert rec.error.startswith(f"the agent was killed by SIGKILL (exit {code}): most often the out-of-memory "
                                   "killer; the agent's sandbox has the task's memory (256m)"), rec.error
    assert rec.reward == 0.0 and rec.tests is None
    assert "a + b" in rec.diff  # the fix it made before dying is in the record, not graded


def test_resume_skips_finished_tasks(admin, suites, tmp_path):
    out = tmp_path / "job.jsonl"
    options = RolloutOptions(base_url=admin.url, policy="oracle")
    first = run(run_job("humaneval-repo", options, tasks=HUMANEVAL_SAMPLE[:3], out=out, concurrency=3))
    assert first["ran"] == 3 and first["mean_reward"] == 1.0
    lines = out.read_text(encoding="utf-8").splitlines()
    # a real rollout's line has the layout the runner wrote before its record was a model, and reads back as is
    layout = json.loads(next(line for line in (RECORD_FIXTURES / ROLLOUTS).read_text(encoding="utf-8")
                              .splitlines() if f'"task_id": "{HUMANEVAL}"' in line))
    for line in lines:
        rec = json.loads(line)
        assert [list(rec), list(rec["harness"]), list(rec["tests"]), list(rec["timings"])] == [
            list(layout), list(layout["harness"]), list(layout["tests"]), list(layout["timings"])], line
        assert RolloutRecord.from_line(line).line() == line
    out.write_text(lines[0] + "\n" + lines[1][:40])  # one kept, one cut short by a stop
    again = run(run_job("humaneval-repo", options, tasks=HUMANEVAL_SAMPLE[:3], out=out, concurrency=3, resume=True))
    assert again["skipped"] == 1 and again["ran"] == 2 and again["tasks"] == 3 and again["mean_reward"] == 1.0
    null = run(run_job("humaneval-repo", RolloutOptions(base_url=admin.url, policy="null"), tasks=HUMANEVAL_SAMPLE[:1],
                       out=out, resume=True))
    assert null["skipped"] == 0 and null["ran"] == 1  # the oracle's records do not count for null
    done = [json.loads(line) for line in out.read_text().splitlines()[2:4]]
    assert sorted(r["task_id"] for r in done) == sorted(set(HUMANEVAL_SAMPLE[:3]) - {json.loads(lines[0])["task_id"]})


def test_a_users_harbor_folder_runs_from_the_cli(admin, suites, tmp_path):
    folder = tmp_path / "my-tasks"
    harbor_task(folder, "fix-add")
    harbor_task(folder, "fix-add-too")
    broken = harbor_task(folder, "broken")
    (broken / "solution" / "solve.sh").unlink()
    for policy, reward in (("oracle", 1.0), ("null", 0.0)):
        out = tmp_path / f"{policy}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "job", "run", "--url", admin.url,
                               "--suite", str(folder), "--policy", policy, "--out", str(out), "--jsonl"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        recs = {r["task_id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert recs["fix-add"]["reward"] == reward and recs["fix-add-too"]["reward"] == reward
        assert "missing solution/solve.sh" in recs["broken"]["error"]  # the others went on
        events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
        assert events[0]["event"] == "start" and events[-1]["event"] == "end"
        assert sum(e["event"] == "rollout" for e in events) == 3
        summary = json.loads(proc.stdout)
        assert summary["tasks"] == 3 and summary["errors"] == 1


def test_the_oracle_command_fixes_through_a_bash_tool(admin, suites):
    """What a chat harness's bash tool would run for the oracle policy: the same fix."""
    from rock.agentic.tasks.oracle import oracle_command

    async def via_bash(box, task):
        r = await box.execute(Command(command=["bash", "-c", oracle_command(task)], timeout=120))
        assert r.exit_code == 0, r.stdout + r.stderr

    for suite, tid in (("pypi-bugs", open_suite("pypi-bugs").ids()[-1]), ("humaneval-repo", "humaneval-007")):
        rec = run(rollout(open_suite(suite).get(tid), RolloutOptions(base_url=admin.url, policy=via_bash)))
        assert rec.reward == 1.0 and rec.error is None and rec.harness.name == "none", rec.harness


def test_a_task_whose_repository_is_in_its_dockerfile(admin, suites, tmp_path):
    """environment/Dockerfile instead of docker_image + workspace/: the image holds the repository,
    so the diff is taken against the agent sandbox's starting state."""
    t = harbor_task(tmp_path, "in-image")
    shutil.rmtree(t / "environment" / "workspace")
    (t / "environment" / "Dockerfile").write_text(
        "FROM python:3.11\nRUN mkdir -p /workspace && printf 'def add(a, b):\\n    return a - b\\n' > /workspace/calc.py\n")
    (t / "task.toml").write_text('[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 30.0\n')
    task = load_task(t)
    assert task.image is None
    recs = {p: run(rollout(task, RolloutOptions(base_url=admin.url, policy=p))) for p in ("oracle", "null")}
    assert recs["oracle"].reward == 1.0 and recs["null"].reward == 0.0, recs["oracle"].error
    assert "-    return a - b\n+    return a + b" in recs["oracle"].diff and recs["null"].diff == ""
