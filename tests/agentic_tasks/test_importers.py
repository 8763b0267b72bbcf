"""Importers: a SWE-bench-shaped row made from a local repository's real fix and a terminal-bench
task of our own become Harbor task folders that rollouts run (oracle 1.0, null 0.0, on docker and
bwrap); bad rows and bad task files fail naming themselves, and nothing a row says leaves OUT or
reaches a shell on the host."""

import asyncio
import json
import os

import pytest
import tomllib

from rock.agentic.importers import import_rows, import_tasks
from rock.agentic.tasks import load_task
from rock.agentic.tasks.jobs import run_job_sync
from rock.agentic.tasks.rollout import RolloutOptions, rollout
from rock.cli.main import main
from tests.agentic_tasks.importer_fixtures import (
    FIXED,
    calc_repo,
    calc_row,
    git,
    terminal_bench_task,
    write_rows,
)

UNITTEST = "python3 -m unittest"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """One folder holding the imported SWE row and the imported terminal-bench task (through the CLI)."""
    root = tmp_path_factory.mktemp("imports")
    repo = calc_repo(root / "repos")
    rows = write_rows(root / "rows.jsonl", [calc_row(repo)])
    out = root / "tasks"
    assert main(["tasks", "import", "swe", str(rows), "--repos", str(root / "repos"), "--out", str(out),
                 "--test-cmd", UNITTEST]) == 0
    assert main(["tasks", "import", "terminal-bench", str(terminal_bench_task(root / "tb")), "--out", str(out)]) == 0
    return out


def test_the_swe_task_hides_its_tests_and_holds_the_repository_at_its_base(imported):
    t = imported / "acme__calc-1"
    task = load_task(t)
    assert task.image is None and task.workdir == "/testbed" and task.runner == "script"
    assert not task.graded_by_tests  # test.sh decides, as under Harbor
    repo = t / "environment" / "repo"
    assert "return a - b" in (repo / "calc" / "__init__.py").read_text().split("def sub")[0]  # the bug, at base
    assert not (repo / "tests" / "test_add.py").exists()  # the test that shows the fix is only in tests/
    assert (t / "tests" / "files" / "tests" / "test_add.py").is_file()
    assert (t / "tests" / "tests.txt").read_text().split() == ["tests.test_add.AddTest.test_add",
                                                               "tests.test_sub.SubTest.test_sub"]
    assert "return a + b" in (t / "solution" / "files" / "calc" / "__init__.py").read_text()
    assert "+    return a + b" in (t / "solution" / "fix.patch").read_text()
    conf = tomllib.loads((t / "task.toml").read_text())
    assert conf["metadata"]["instance_id"] == "acme__calc-1" and conf["environment"]["workdir"] == "/testbed"
    assert conf["environment"]["network_mode"] == "no-network"  # as ROCK runs it, so Harbor does too


def test_the_terminal_bench_task_maps_as_harbor_maps_it(imported):
    t = imported / "hello-file"
    task = load_task(t)
    assert task.workdir == "/app" and task.agent_timeout == 120.0 and task.verifier_timeout == 60.0
    test_sh = (t / "tests" / "test.sh").read_text()
    assert "python3 /tests/test_outputs.py" in test_sh and "echo 1 > /logs/verifier/reward.txt" in test_sh
    docker = (t / "environment" / "Dockerfile").read_text()
    assert "ENV TEST_DIR=/tests" in docker and 'ENV GREETING_FILE="/app/greeting.txt"' in docker
    assert task.metadata["difficulty"] == "easy" and task.metadata["tags"] == ["files"]
    assert not (t / "environment" / "tests").exists()  # the Dockerfile copies no tests: they stay hidden


@pytest.mark.parametrize("policy,reward", [("oracle", 1.0), ("null", 0.0)])
def test_imported_tasks_run_oracle_one_null_zero(admin, imported, policy, reward):
    summary = run_job_sync(str(imported), RolloutOptions(base_url=admin.url, policy=policy), concurrency=2)
    got = {r["task_id"]: (r["reward"], r["error"]) for r in summary["records"]}
    assert got == {"acme__calc-1": (reward, None), "hello-file": (reward, None)}, \
        {r["task_id"]: (r["error"], (r["tests"] or {}).get("output")) for r in summary["records"]}
    swe = next(r for r in summary["records"] if r["task_id"] == "acme__calc-1")
    out = swe["tests"]["output"]
    if policy == "oracle":
        assert "+    return a + b" in swe["diff"] and "Ran 2 tests" in out and "OK" in out
    else:
        assert swe["diff"] == "" and "FAIL: test_add" in out  # a real failure of the hidden test, not an error


def test_a_row_without_its_repository_fails_naming_the_row(tmp_path):
    repo = calc_repo(tmp_path / "repos")
    good = calc_row(repo, "acme__calc-1", encoded=False)
    orphan = dict(calc_row(repo, "other__lib-7"), repo="other/lib")
    rows = write_rows(tmp_path / "rows.jsonl", [orphan, good])
    result = import_rows(rows, tmp_path / "out", tmp_path / "repos")
    assert [p.name for p in result.imported] == ["acme__calc-1"]  # the good row still imported
    (name, error), = result.failed
    assert name == "other__lib-7" and "row other__lib-7" in error and "repository other/lib is not given" in error
    assert not (tmp_path / "out" / "other__lib-7").exists()  # nothing half-written is left
    # the CLI says the same and exits 1
    assert main(["tasks", "import", "swe", str(write_rows(tmp_path / "o.jsonl", [orphan])),
                 "--out", str(tmp_path / "out2")]) == 1


def test_a_row_naming_an_image_needs_no_clone(tmp_path):
    row = dict(calc_row(calc_repo(tmp_path / "repos"), "acme__calc-2"), image_name="registry.local/calc:base")
    result = import_rows(write_rows(tmp_path / "rows.jsonl", [row]), tmp_path / "out")
    assert not result.failed, result.failed
    t = tmp_path / "out" / "acme__calc-2"
    assert (t / "environment" / "Dockerfile").read_text().startswith("FROM registry.local/calc:base\n")
    assert "git apply" in (t / "tests" / "test.sh").read_text() and "git apply" in (t / "solution" / "solve.sh").read_text()


def test_what_a_row_says_stays_out_of_the_host(tmp_path):
    """Hostile rows: a name that climbs out of OUT, a repo and a commit shaped as shell or git options, a patch
    that writes outside the repository. Each fails naming its row; nothing lands outside OUT and no command ran."""
    repo = calc_repo(tmp_path / "repos")
    marker = tmp_path / "pwned"
    base = calc_row(repo)
    escape_patch = ("diff --git a/../../escaped.txt b/../../escaped.txt\nnew file mode 100644\n--- /dev/null\n"
                    "+++ b/../../escaped.txt\n@@ -0,0 +1 @@\n+x\n")
    rows = [dict(base, instance_id="../climb"),
            dict(base, instance_id="bad-repo", repo=f"acme/calc;touch {marker}"),
            dict(base, instance_id="bad-commit", base_commit=f"--output={marker}"),
            dict(base, instance_id="bad-patch", patch=escape_patch),
            dict(base, instance_id="bad-ids", FAIL_TO_PASS=json.dumps(["a\nrm -rf /"]))]
    out = tmp_path / "deep" / "out"
    result = import_rows(write_rows(tmp_path / "rows.jsonl", rows), out, tmp_path / "repos")
    errors = dict(result.failed)
    assert not result.imported and set(errors) == {"../climb", "bad-repo", "bad-commit", "bad-patch", "bad-ids"}
    assert "cannot name a task folder" in errors["../climb"]
    assert "is not owner/name" in errors["bad-repo"] and "is not a commit id" in errors["bad-commit"]
    assert "patch does not apply" in errors["bad-patch"] and "one line" in errors["bad-ids"]
    assert not marker.exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists() and os.listdir(out) == []
    # control: the same row, untouched, imports
    ok = import_rows(write_rows(tmp_path / "ok.jsonl", [base]), out, tmp_path / "repos")
    assert [p.name for p in ok.imported] == ["acme__calc-1"]
    assert git(repo, "status", "--porcelain") == ""  # the clone itself was only read


def test_a_malformed_task_yaml_fails_naming_the_file(tmp_path):
    good = terminal_bench_task(tmp_path / "src", "good")
    bad = terminal_bench_task(tmp_path / "src", "broken")
    (bad / "task.yaml").write_text("instruction: [unclosed\n")
    compose = terminal_bench_task(tmp_path / "src", "two-services")
    (compose / "docker-compose.yaml").write_text("services:\n  client:\n    build: .\n  db:\n    image: postgres\n")
    result = import_tasks(tmp_path / "src", tmp_path / "out")
    assert [p.name for p in result.imported] == [good.name]
    errors = dict(result.failed)
    assert str(bad / "task.yaml") in errors["broken"] and "not valid YAML" in errors["broken"]
    assert str(compose / "docker-compose.yaml") in errors["two-services"] and "2 services" in errors["two-services"]
    assert sorted(os.listdir(tmp_path / "out")) == ["good"]
    link = terminal_bench_task(tmp_path / "src2", "linked")
    (link / "tests" / "secret").symlink_to("/etc/passwd")
    (name, error), = import_tasks(link, tmp_path / "out2").failed
    assert name == "linked" and "symbolic link" in error


def test_the_swe_verifier_needs_pass_to_pass_too_and_ignores_planted_tests(admin, imported):
    """A change that fixes add but breaks sub pays 0 (PASS_TO_PASS fails); one that plants its own passing
    test_add.py pays 0 too (dropped from its diff, and the hidden test comes from tests/ at verify time)."""
    task = load_task(imported / "acme__calc-1")

    async def breaks_sub(box, task):
        await box.write_bytes(f"{task.workdir}/calc/__init__.py", FIXED.replace("a - b", "a * b").encode())

    async def plants_test(box, task):
        await box.write_bytes(f"{task.workdir}/tests/test_add.py",
                              b"import unittest\n\n\nclass AddTest(unittest.TestCase):\n"
                              b"    def test_add(self):\n        pass\n")

    recs = {}
    for policy, failing in ((breaks_sub, "FAIL: test_sub"), (plants_test, "FAIL: test_add")):
        rec = recs[policy] = asyncio.run(rollout(task, RolloutOptions(base_url=admin.url, policy=policy)))
        assert rec.error is None and rec.reward == 0.0, (rec.error, rec.tests)
        assert failing in rec.tests.output, rec.tests.output
    # the attempts ran: the broken sub reached the verifier, the planted test was seen and dropped
    assert "+    return a + b" in recs[breaks_sub].diff and "+    return a * b" in recs[breaks_sub].diff
    assert "tests/test_add.py" in recs[plants_test].ignored_paths
