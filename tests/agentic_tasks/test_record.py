"""The rollout record as a typed model reads and writes the job files' JSON byte for byte.

``records/written_by_main.jsonl`` and ``records/training_written_by_main.jsonl`` were written by the job runners
before the record was a model (``records/make_records.py``); ``older.jsonl`` is a line a job wrote on this host
with an older format (no ``instruction``, no ``image_ms``); ``with_extras.jsonl`` carries keys this code does not
know, at the top and inside the harness and tests parts, and a model call. Nothing here starts a sandbox: the
jobs in ``make_records`` run the production code with a stand-in sandbox, which is what makes their lines the same
on every run; the rollout tests compare the lines of real rollouts with these."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rock.agentic import trajectories
from rock.agentic.record import HarnessRun, RolloutRecord, TaskRecord
from rock.agentic.tasks.jobs import finished
from tests.agentic_tasks.records import make_records

RECORDS = Path(__file__).parent / "records"
ROLLOUT_FILES = ("written_by_main.jsonl", "older.jsonl", "with_extras.jsonl")


def lines(name: str) -> list[str]:
    return (RECORDS / name).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", ROLLOUT_FILES)
def test_every_rollout_line_loads_and_writes_back_the_same_bytes(name):
    for line in lines(name):
        rec = RolloutRecord.from_line(line)
        assert rec.line() == line
        assert rec.to_json() == json.loads(line)


def test_the_fields_read_as_typed_attributes():
    by_id = {r.task_id: r for r in map(RolloutRecord.from_line, lines("written_by_main.jsonl"))}
    resolved = by_id["resolved"]
    assert (resolved.reward, resolved.resolved, resolved.passed, resolved.error) == (1.0, True, True, None)
    assert resolved.harness == HarnessRun(name="none", policy="oracle", exit_code=0, output="done: ünïcode\n",
                                          timed_out=False)
    assert resolved.tests is not None and resolved.tests.fail_to_pass is not None
    assert (resolved.tests.fail_to_pass.passed, resolved.tests.fail_to_pass.of, resolved.tests.failed) == (1, 1, [])
    assert resolved.timings["queue_ms"] == 12.5 and list(resolved.timings)[0] == "queue_ms"
    assert (resolved.agent_sandbox, resolved.verifier_sandbox) == ("sb-0", "sb-1")
    killed = by_id["killed"]
    assert killed.harness.exit_code == 137 and killed.error == killed.harness.error and killed.tests is None
    assert killed.verifier_sandbox is None and "verifier_sandbox" not in killed.to_json()
    broken = by_id["broken"]  # a task folder that did not load: the summary's fields only
    assert broken.error == "task broken: no task.toml" and list(broken.to_json()) == [
        "suite", "task_id", "category", "reward", "passed", "resolved", "pass_rate", "error"]
    assert broken.harness.name is None and broken.timings == {}
    assert by_id["scripted"].harness.result == {"note": "héllo ✓", "n": [1, 2.5, None, True]}
    [older] = map(RolloutRecord.from_line, lines("older.jsonl"))
    assert older.instruction == "" and "instruction" not in older.to_json() and older.reward == 1.0


def test_keys_this_code_does_not_know_survive_a_change_in_place():
    [line] = lines("with_extras.jsonl")
    rec = RolloutRecord.from_line(line)
    assert rec.model_extra == {"seed": 7, "labels": {"team": "ré", "ok": True}}
    assert rec.harness.model_extra == {"agent_version": "2.4.6"}
    rec.reward, rec.error = 0.0, "re-graded"
    rec.timings["regrade_ms"] = 3.5
    expected = json.loads(line)
    expected.update(reward=0.0, error="re-graded")
    expected["timings"]["regrade_ms"] = 3.5
    assert rec.line() == json.dumps(expected, ensure_ascii=False)
    assert list(json.loads(rec.line()))[3] == "seed"  # where the file had it


def test_a_record_writes_the_keys_it_was_given_or_set_in_that_order():
    rec = RolloutRecord(task_id="t", suite="s")
    assert rec.line() == '{"task_id": "t", "suite": "s"}'
    rec.verifier_sandbox = "v"
    rec.harness.exit_code = 3  # a default part changed in place is written too
    rec.model_calls.append({"index": 0})
    rec.agent_sandbox = "a"
    assert list(rec.to_json()) == ["task_id", "suite", "verifier_sandbox", "agent_sandbox", "harness", "model_calls"]
    assert rec.to_json()["harness"] == {"exit_code": 3}
    with pytest.raises(ValueError):
        RolloutRecord.from_line('{"task_id": "t", "harness": "not a harness"}')
    with pytest.raises(ValueError):
        RolloutRecord.from_line("[1, 2]")


def test_the_job_runner_writes_what_it_wrote_before(tmp_path):
    make_records.write(tmp_path / "job.jsonl")
    assert (tmp_path / "job.jsonl").read_bytes() == (RECORDS / "written_by_main.jsonl").read_bytes()


def test_the_training_runner_writes_what_it_wrote_before(tmp_path):
    make_records.write_training(tmp_path / "training.jsonl")
    assert (tmp_path / "training.jsonl").read_bytes() == (RECORDS / "training_written_by_main.jsonl").read_bytes()
    for line in lines("training_written_by_main.jsonl"):
        rec = TaskRecord.from_line(line)
        assert rec.line() == line
    graded, evaluated, gone = map(TaskRecord.from_line, lines("training_written_by_main.jsonl"))
    assert graded.rewards == [0, 0.5] and isinstance(graded.rewards[0], int)  # as the suite sent them
    assert (evaluated.reward, evaluated.details) == (0.25, {"error": None, "result": [1, 2]})
    assert gone.error == "KeyError: 'instance_id'" and gone.details is None and "details" not in gone.to_json()


def test_resume_reads_the_old_files(tmp_path):
    out = tmp_path / "job.jsonl"
    out.write_text("\n".join(lines("written_by_main.jsonl") + lines("older.jsonl")) + "\n" + '{"task_id": "cut',
                   encoding="utf-8")
    assert sorted(finished(out, "none", "oracle")) == ["half", "humaneval-000", "resolved"]
    assert sorted(finished(out, "none", "_policy")) == ["scripted"]
    assert finished(out, "ours", "oracle") == {}


def test_the_training_export_reads_records_and_lines_alike():
    [line] = lines("with_extras.jsonl")
    from_line = list(trajectories.from_job([json.loads(line), {"env_type": "bfcl", "messages": []}, "junk"]))
    from_record = list(trajectories.from_job([RolloutRecord.from_line(line)]))
    assert from_line == from_record and len(from_line) == 1
    assert from_line[0]["meta"] == {"task_id": "resolved", "harness": "none", "error": None}
