"""Task folders and suites without sandboxes: the loader's errors, the mutants, the grade, the
built suites' shape, bad names on the command line."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from rock.agentic.tasks import TaskError, load_task, mutate
from rock.agentic.tasks.verifier.box.grade import grade
from rock.agentic.tasks.suites import open_suite, select_ids
from tests.agentic_tasks.conftest import harbor_task


@pytest.mark.parametrize("part", ["instruction.md", "task.toml", "environment", "tests/test.sh", "solution/solve.sh"])
def test_a_task_folder_missing_a_part_is_named(tmp_path, part):
    t = harbor_task(tmp_path)
    target = t / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(TaskError) as err:
        load_task(t)
    assert f"missing {part}" in err.value.message and "fix-add" in err.value.message


def test_a_task_needs_an_image_and_valid_toml(tmp_path):
    t = harbor_task(tmp_path)
    (t / "task.toml").write_text("[agent]\ntimeout_sec = 60\n")
    with pytest.raises(TaskError, match="no Dockerfile and task.toml names no"):
        load_task(t)
    (t / "environment" / "Dockerfile").write_text("FROM python:3.11\n")
    assert load_task(t).image is None  # built from the Dockerfile
    (t / "task.toml").write_text("[agent\n")
    with pytest.raises(TaskError, match="not valid TOML"):
        load_task(t)
    (t / "task.toml").write_text('[agent]\ntimeout_sec = -1\n[environment]\ndocker_image = "python:3.11"\n')
    with pytest.raises(TaskError, match="timeout_sec must be a positive number"):
        load_task(t)


def test_unknown_suite_and_task_ids_get_the_closest_names(suites):
    with pytest.raises(TaskError, match=r"unknown suite 'pypi-bug' \(closest: pypi-bugs\)"):
        open_suite("pypi-bug")
    suite = open_suite("humaneval-repo")
    with pytest.raises(TaskError, match=r"no task 'humaneval-16' \(closest: "):
        select_ids(suite, ["humaneval-000", "humaneval-16"])
    env = {**os.environ, "ROCK_AGENTIC_CACHE": str(suites)}
    for args, words in ((["--suite", "humaneval"], "closest: humaneval-repo"),
                        (["--suite", "pypi-bugs", "--task", "cachetool-0000"], "closest: cachetools-0000"),
                        (["--suite", "pypi-bugs", "--harness", "our"], "unknown harness 'our'; known: none, "),
                        (["--suite", "pypi-bugs", "--harness", "ours", "--policy", "replay"], "needs a recorded"),
                        (["--suite", "pypi-bugs", "--harness", "ours", "--policy", "openai"], "needs --policy-url"),
                        (["--suite", "pypi-bugs", "--policy", "openai"], "runs the policies oracle, null"),
                        (["--suite", "pypi-bugs", "--env", "bfcl"], "one of them")):
        proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "job", "run", "--url", "http://127.0.0.1:9",
                               *args], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 1 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        if "--harness" in args and "our" in args:  # the message lists every harness, the npm agents too
            for name in ("ours", "mini-swe-agent", "claude-code", "codex", "qwen-code", "opencode"):
                assert name in proc.stderr, proc.stderr


def test_mutants_change_one_site_and_invert():
    src = "def f(xs, n):\n    # keep me\n    if len(xs) > n:\n        return xs[n - 1]\n    return None\n"
    ms = mutate.mutants("m.py", src)
    ops = {m.operator for m in ms}
    assert {"flip_comparison", "swap_add_sub", "off_by_one", "negate_condition"} <= ops
    for m in ms:
        bad = src.replace(m.original, m.mutated, 1)
        assert bad != src and "# keep me" in bad  # the rest of the file keeps its bytes
        assert bad.replace(m.mutated, m.original, 1) == src


def test_grade_is_swe_bench_resolved():
    conf = {"FAIL_TO_PASS": ["a", "b"], "PASS_TO_PASS": ["c"]}
    ok = {"tests": {t: {"outcome": "passed"} for t in "abc"}}
    assert grade(conf, ok)["resolved"] and grade(conf, ok)["pass_rate"] == 1.0
    part = {"tests": {"a": {"outcome": "passed"}, "c": {"outcome": "passed"}}}  # b missing: failed
    g = grade(conf, part)
    assert not g["resolved"] and g["pass_rate"] == pytest.approx(2 / 3) and g["failed"] == ["b"]
    assert not grade(conf, {})["resolved"]


def test_built_suites_have_harbor_tasks_with_hidden_tests_apart(suites):
    pb = open_suite("pypi-bugs")
    assert len(pb.ids()) == 3 * 2
    for tid in pb.ids():
        task = pb.get(tid)
        assert task.fail_to_pass and task.pass_to_pass and task.metadata["suite"] == "pypi-bugs"
        # the workspace holds the library without its tests; the tests live only in tests/
        ws_tests = [p for p in task.workspace.rglob("test_*.py")]
        assert ws_tests == []
        files = {f.split("::")[0] for f in task.fail_to_pass}
        assert all((task.tests / "files" / f).is_file() for f in files)
        fix = json.loads((task.solution / "fix.json").read_text())
        assert fix["bad"] in (task.workspace / fix["path"]).read_text()
        assert "Fix the library's code" in task.instruction and task.fail_to_pass[0] in task.instruction
    he = open_suite("humaneval-repo")
    assert len(he.ids()) == 164
    task = he.get("humaneval-000")
    assert "NotImplementedError" in (task.workspace / "solution.py").read_text()
    assert not (task.workspace / "test_hidden.py").exists() and (task.tests / "files" / "test_hidden.py").exists()


def test_network_per_phase_from_harbors_fields(tmp_path):
    """Harbor 0.25's network_mode / allowed_hosts: the agent's override or the environment's
    baseline; the verifier only its own override (no network otherwise)."""
    t = harbor_task(tmp_path)
    base = '[environment]\ndocker_image = "python:3.11"\n'
    (t / "task.toml").write_text(base)
    task = load_task(t)
    assert (task.agent_egress, task.verifier_egress) == (None, None)  # nothing said: no network
    (t / "task.toml").write_text(base + 'network_mode = "allowlist"\nallowed_hosts = ["pypi.org", "*.pythonhosted.org"]\n')
    task = load_task(t)
    assert task.agent_egress["allow"] == ["pypi.org", "*.pythonhosted.org"] and task.agent_egress["default"] == "deny"
    assert task.verifier_egress is None  # the baseline is not the verifier's
    (t / "task.toml").write_text(base + 'network_mode = "public"\n[agent]\nnetwork_mode = "no-network"\n'
                                 '[verifier]\nnetwork_mode = "allowlist"\nallowed_hosts = ["10.0.0.0/8"]\n')
    task = load_task(t)
    assert task.agent_egress is None and task.verifier_egress["allow"] == ["10.0.0.0/8"]
    (t / "task.toml").write_text(base + "allow_internet = true\n")  # Harbor's deprecated spelling
    assert load_task(t).agent_egress == "all"
    for bad, why in (('network_mode = "open"', "network_mode must be one of"),
                     ('network_mode = "public"\nallowed_hosts = ["a.test"]', "only valid with"),
                     ('network_mode = "allowlist"\nallowed_hosts = ["bad host!"]', "allowed_hosts")):
        (t / "task.toml").write_text(base + bad + "\n")
        with pytest.raises(TaskError, match=why):
            load_task(t)
