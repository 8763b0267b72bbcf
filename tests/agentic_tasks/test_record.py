"""The rollout record as a typed model reads and writes the job files' JSON byte for byte.

``records/rollouts_written_by_main.jsonl`` and ``records/training_written_by_main.jsonl`` were written by the job
runners before the record was a model, through a real bwrap admin (``records/make_records.py``, which says what
it normalizes); the first two tests run the same jobs against today's code on a bwrap admin of this module and
compare the bytes. ``older.jsonl`` is a line a job wrote on this host with an older format (no ``instruction``, no
``image_ms``); ``with_extras.jsonl`` carries keys this code does not know, at the top and inside the harness and
tests parts, and a model call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rock.agentic import trajectories
from rock.agentic.record import HarnessRun, RolloutRecord, TaskRecord
from rock.agentic.tasks.jobs import finished
from tests.admin.harness import Admin
from tests.agentic_tasks.records import make_records

RECORDS = Path(__file__).parent / "records"
ROLLOUT_FILES = (make_records.ROLLOUTS, "older.jsonl", "with_extras.jsonl")


def lines(name: str) -> list[str]:
    return (RECORDS / name).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The jobs of ``make_records`` run by today's code on a bwrap admin: (normalized files' folder, raw lines)."""
    root, out = tmp_path_factory.mktemp("record-jobs"), tmp_path_factory.mktemp("record-out")
    admin = Admin("bwrap").start()
    try:
        make_records.write(admin.url, root, out)
    finally:
        admin.stop(stop_sandboxes=True)
    return out, make_records.raw(root)


@pytest.mark.bwrap
def test_the_job_runner_writes_what_it_wrote_before(written):
    out, _ = written
    assert (out / make_records.ROLLOUTS).read_bytes() == (RECORDS / make_records.ROLLOUTS).read_bytes()


@pytest.mark.bwrap
def test_the_training_runner_writes_what_it_wrote_before(written):
    out, raw = written
    assert (out / make_records.TRAINING).read_bytes() == (RECORDS / make_records.TRAINING).read_bytes()
    # the runners' own lines (milliseconds, sandbox ids and all) read and write back unchanged
    assert len(raw) == 6 + len(make_records.BFCL_TASKS)
    for line in raw[:6]:
        assert RolloutRecord.from_line(line).line() == line
    for line in raw[6:]:
        assert TaskRecord.from_line(line).line() == line
    graded, _, gone = map(TaskRecord.from_line, raw[6:])
    assert (graded.reward, graded.passed, graded.rewards, graded.error) == (1.0, True, [1.0], None)
    steps = graded.timings["steps_ms"]
    assert isinstance(steps, list) and len(steps) == 1 and steps[0] > 0 and list(graded.timings)[0] == "steps_ms"
    assert graded.details is not None and graded.details["valid"] is True
    assert gone.error == "TrainingError: no bfcl task 'no_such_task_0'" and gone.details is None
    assert "details" not in gone.to_json() and gone.messages == []


@pytest.mark.parametrize("name", [*ROLLOUT_FILES, make_records.TRAINING])
def test_every_line_loads_and_writes_back_the_same_bytes(name):
    model = TaskRecord if name == make_records.TRAINING else RolloutRecord
    for line in lines(name):
        rec = model.from_line(line)
        assert rec.line() == line
        assert rec.to_json() == json.loads(line)


def test_numbers_keep_their_json_type():
    line = '{"task_id": "t", "reward": 1, "pass_rate": 0, "timings": {"total_ms": 12, "agent_ms": 2.5}}'
    rec = RolloutRecord.from_line(line)
    assert rec.line() == line and isinstance(rec.reward, int) and isinstance(rec.timings["agent_ms"], float)


def test_the_fields_read_as_typed_attributes():
    humaneval, fix, no_number, killed, broken, scripted = map(RolloutRecord.from_line, lines(make_records.ROLLOUTS))
    assert (humaneval.reward, humaneval.resolved, humaneval.passed, humaneval.error) == (1.0, True, True, None)
    assert humaneval.tests is not None and humaneval.tests.fail_to_pass is not None
    assert (humaneval.tests.fail_to_pass.passed, humaneval.tests.fail_to_pass.of, humaneval.tests.failed) == (1, 1, [])
    assert humaneval.timings["queue_ms"] == 0 and list(humaneval.timings)[0] == "queue_ms"
    assert fix.harness == HarnessRun(name="none", policy="oracle", exit_code=0, output="", timed_out=False)
    assert fix.tests is not None and fix.tests.reward_txt == "1" and fix.tests.fail_to_pass is None
    assert no_number.error is not None and no_number.error.startswith("task no-number: test.sh (exit 0) wrote no")
    assert no_number.tests is not None and no_number.tests.output == "naïve ✓ oops\n"
    assert killed.harness.exit_code == -9 and killed.error == killed.harness.error and killed.tests is None
    assert killed.verifier_sandbox is None and "verifier_sandbox" not in killed.to_json()
    assert broken.error is not None and "is missing instruction.md" in broken.error and list(broken.to_json()) == [
        "suite", "task_id", "category", "reward", "passed", "resolved", "pass_rate", "error"]
    assert broken.harness.name is None and broken.timings == {}
    assert scripted.harness.result == {"note": "héllo ✓", "n": [1, 2.5, None, True], "task": "fix-add"}
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
    copy = rec.model_copy()
    copy.diff = "d"  # a copy's new key is its own
    assert "diff" in copy.to_json() and "diff" not in rec.to_json()
    with pytest.raises(ValueError):
        RolloutRecord.from_line('{"task_id": "t", "harness": "not a harness"}')
    with pytest.raises(ValueError):
        RolloutRecord.from_line("[1, 2]")


def test_resume_reads_the_old_files(tmp_path):
    out = tmp_path / "job.jsonl"
    out.write_text("\n".join(lines(make_records.ROLLOUTS) + lines("older.jsonl")) + "\n" + '{"task_id": "cut',
                   encoding="utf-8")
    # errors (test.sh wrote no number, killed, broken) are not finished; the last line per task wins
    assert sorted(finished(out, "none", "oracle")) == ["fix-add", "humaneval-000"]
    assert finished(out, "none", "oracle")["humaneval-000"].instruction == ""  # older.jsonl's, after the other
    assert sorted(finished(out, "none", "_result")) == ["fix-add"]
    assert finished(out, "ours", "oracle") == {}


def test_the_training_export_reads_records_and_lines_alike():
    [line] = lines("with_extras.jsonl")
    from_line = list(trajectories.from_job([json.loads(line), {"env_type": "bfcl", "messages": []}, "junk"]))
    from_record = list(trajectories.from_job([RolloutRecord.from_line(line)]))
    assert from_line == from_record and len(from_line) == 1
    assert from_line[0]["meta"] == {"task_id": "resolved", "harness": "none", "error": None}
