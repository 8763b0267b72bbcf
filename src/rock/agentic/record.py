"""The records of rollouts: what one agentic rollout (``RolloutRecord``) or one training task attempt
(``TaskRecord``) produced, as a job's JSONL holds them, one record a line.

A record writes back exactly the JSON it holds: the keys it was given or was set, in that order (a record
the rollout builds has the runner's keys in the runner's order; one loaded from a file keeps the file's), and
none it was not (a field never set is left out, as ``agent_sandbox`` is when the
agent's sandbox never started). Keys this code does not know are kept and written back. ``line()`` is the
JSONL line (``ensure_ascii=False``, as every job file has been written); ``to_json()`` the dictionary.

    rec = RolloutRecord.from_line(line)     # any job file's line, older ones included
    rec.reward, rec.harness.exit_code, rec.timings.get("agent_ms")
    rec.line() == line.rstrip("\\n")        # True for what the runner wrote
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import (BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, PrivateAttr,
                      SerializerFunctionWrapHandler, model_serializer, model_validator)

R = TypeVar("R", bound="Record")
# A number as the line had it: an int stays an int (a float field would write 1 back as 1.0).
Number = int | float


class Record(BaseModel):
    """A JSON object with declared fields that writes back the keys it holds, in the order it got them, and
    nothing else: a field never set stays out of the JSON while it holds its default (one changed in place, a
    default list appended to, is written after the others)."""

    model_config = ConfigDict(extra="allow")

    _keys: list[str] = PrivateAttr(default=[])  # copied for each record

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Record]) -> Record:
        rec = handler(data)
        if isinstance(data, dict) and rec is not data:
            rec._keys = [k for k in data if isinstance(k, str)]
        return rec

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self._keys:
            self._keys = [*self._keys, name]  # a new list: a copy of the record may share the old one
        super().__setattr__(name, value)

    @model_serializer(mode="wrap")
    def _held_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        held = {k: out[k] for k in self._keys if k in out}
        for name, field in type(self).model_fields.items():
            if name in out and name not in held and getattr(self, name) != field.get_default(call_default_factory=True):
                held[name] = out[name]
        return held

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object it is written as (nested records as dictionaries)."""
        data: dict[str, Any] = self.model_dump()
        return data

    def line(self) -> str:
        """The record's JSONL line, without its newline."""
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_line(cls: type[R], line: str | bytes) -> R:
        """The record of one JSONL line (ValueError for one that is not a JSON object of this shape)."""
        return cls.model_validate(json.loads(line))


class Tally(Record):
    """How many of one test list passed."""

    passed: int = 0
    """Tests of the list that passed."""
    of: int = 0
    """Tests in the list."""


class HiddenTests(Record):
    """What the verifier's supervisor reported of the hidden tests, and the grade drawn from it."""

    runner: str | None = None
    """The task's test runner (``pytest``, ``script``)."""
    exit_code: int | None = None
    """The test run's exit code (None when the supervisor gave none)."""
    timed_out: bool = False
    """The tests ran past the verifier's time limit (graded as failed)."""
    output: str = ""
    """The last 2000 characters the tests printed."""
    reward_txt: str = ""
    """What test.sh wrote to /logs/verifier/reward.txt (stripped, at most 100 characters)."""
    leftover_processes: int = 0
    """The tests' processes the supervisor had to end after the run."""
    foreign_reports: int = 0
    """Result files that were not the supervisor's own (written by the agent's code, ignored)."""
    resolved: bool | None = None
    """SWE-bench's resolved: every FAIL_TO_PASS and PASS_TO_PASS test passed (tasks graded by test lists)."""
    pass_rate: Number | None = None
    """The share of the listed tests that passed (tasks graded by test lists)."""
    fail_to_pass: Tally | None = None
    """FAIL_TO_PASS tests that passed, of how many."""
    pass_to_pass: Tally | None = None
    """PASS_TO_PASS tests that passed, of how many."""
    failed: list[str] | None = None
    """The first 50 listed tests that did not pass."""


class HarnessRun(Record):
    """The agent's run as its harness recorded it."""

    name: str | None = None
    """The harness (``none``, ``ours``, ``mini-swe-agent``, a terminal agent...)."""
    policy: str | None = None
    """The policy's name (a callable policy's ``__name__``)."""
    exit_code: int | None = None
    """The agent's exit code (128 + N or -N: killed by signal N)."""
    output: str | None = None
    """The last 4000 characters the agent printed."""
    timed_out: bool | None = None
    """The agent ran past its time limit."""
    error: str | None = None
    """Why the agent's run failed (a crash, its time limit, a signal, a failed policy); the rollout is graded
    all the same unless the agent was killed."""
    result: Any = None
    """What a test's callable policy returned (harness ``none``)."""


class Scored(Record):
    """What a job's summary counts of any record: its task, category, policy, reward, pass and error."""

    task_id: str = ""
    """The task's id in its suite."""
    category: str | None = None
    """What the summary's ``by_category`` counts it under (a library, a BFCL category, the suite)."""
    policy: str | None = None
    """The policy's name."""
    reward: Number = 0.0
    """The reward, in [0, 1]; 0.0 for a rollout that failed."""
    passed: bool = False
    """The reward is full (1.0)."""
    error: str | None = None
    """Why the rollout failed (its infrastructure, a policy's upstream, a verifier that could not decide); None
    when it ran to its grade."""


class RolloutRecord(Scored):
    """One rollout of an agentic task (``rock.agentic.tasks.rollout``): the agent's run, its diff and the hidden
    tests' verdict. A task whose folder does not load has only the summary's fields and ``suite``,
    ``resolved``, ``pass_rate``."""

    suite: str = ""
    """The suite's name ("" for a task rolled out on its own)."""
    harness: HarnessRun = Field(default_factory=HarnessRun)
    """The agent's run."""
    instruction: str = ""
    """The task's instruction (its first 20000 characters)."""
    model_calls: list[dict[str, Any]] = Field(default_factory=list)
    """Every model call of the agent as the admin recorded it: ``rock.actions.records.CallRecord``'s JSON (index,
    request, response, status, latency, token ids and logprobs where the upstream sent them), kept as that JSON
    so that a record of any version reads and writes back unchanged (``CallRecord.model_validate`` reads one)."""
    diff: str = ""
    """The agent's change to its workspace, a unified diff."""
    ignored_paths: list[str] = Field(default_factory=list)
    """Changed paths left out of the diff and the verifier (protected paths, symbolic links)."""
    tests: HiddenTests | None = None
    """The hidden tests' report; None when the verifier never reported."""
    resolved: bool = False
    """The hidden tests say the task is solved."""
    pass_rate: Number = 0.0
    """The share of the listed tests that passed (the reward itself for tasks graded by reward.txt)."""
    timings: dict[str, Number] = Field(default_factory=dict)
    """Milliseconds per phase, in the order they ran: ``queue_ms`` (a job's), ``image_ms``, ``agent_setup_ms``,
    ``harness_install_ms``, ``harness_run_ms``, ``agent_ms``, ``diff_ms``, ``verify_wait_ms``,
    ``verifier_start_ms``, ``tests_ms``, ``grading_ms``, ``verify_ms``, ``total_ms``."""
    agent_sandbox: str | None = None
    """The agent's sandbox (absent when it never started)."""
    verifier_sandbox: str | None = None
    """The verifier's sandbox (absent when the rollout ended before it)."""


class TaskRecord(Scored):
    """One attempt at a training task (``rock.training.runner.run_task``): the conversation, each step's reward,
    the evaluation."""

    env_type: str = ""
    """The training suite (``bfcl``, ``reasoning_gym``, ``humaneval``...)."""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    """The conversation: the task's first state, then each action and what the step answered."""
    rewards: list[Number] = Field(default_factory=list)
    """Each step's reward, as the suite sent it (an int stays an int)."""
    timings: dict[str, Number | list[Number]] = Field(default_factory=dict)
    """Milliseconds: ``steps_ms`` (one a step), ``create_ms``, ``evaluate_ms``, ``total_ms``."""
    details: dict[str, Any] | None = None
    """The evaluation's ``valid``, ``error``, ``error_type`` and ``result`` (absent when it failed)."""


__all__ = ["HarnessRun", "Record", "RolloutRecord", "Scored", "Tally", "TaskRecord", "HiddenTests"]
