"""Rollout records as the job runner writes them, from the production code paths with a stand-in sandbox.

``rock.agentic.tasks.jobs.run_job`` runs over tasks of every kind of ending (resolved by the task's test lists, a
reward.txt number, a test.sh that wrote none, an agent killed by SIGKILL, a test's callable policy with a JSON
result, a task folder that does not load) and writes its JSONL; only the sandbox (its start, commands and files)
and the verifier's report are stand-ins, and the clocks tick by a fixed step, so the lines are the same on every
run. ``python -m tests.agentic_tasks.records.make_records OUT`` wrote ``written_by_main.jsonl`` with the code as
it was before the record became a typed model; ``test_record.py`` runs the same job against today's code and
compares the bytes."""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from rock.agentic.tasks import harbor, jobs, rollout, verifier, workspace
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.rollout import RolloutOptions

TASK_TOML = ('version = "1.0"\n[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 30.0\n'
             '[environment]\ndocker_image = "python:3.11"\n')
# exit code of the stand-in solve.sh and the verifier's report, per task
PLAN: dict[str, tuple[int, dict[str, Any]]] = {
    "resolved": (0, {"exit_code": 0, "timed_out": False, "output": "2 passed — ✓\n", "reward_txt": "",
                     "results": {"tests": {"t::a": {"outcome": "passed"}, "t::b": {"outcome": "passed"}}}}),
    "half": (0, {"exit_code": 0, "timed_out": False, "output": "half\n", "reward_txt": "0.5\n",
                 "leftover_processes": 2, "foreign_reports": 1}),
    "no-number": (0, {"exit_code": 127, "timed_out": False, "output": "bash: pytest: not found\n",
                      "reward_txt": "oops"}),
    "killed": (137, {}),
}
SCRIPTED = "scripted"  # run with a callable policy
BROKEN = "broken"  # its folder does not load


def _task(root: Path, name: str) -> harbor.Task:
    t = root / name
    (t / "environment" / "workspace").mkdir(parents=True)
    (t / "environment" / "workspace" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (t / "tests").mkdir()
    (t / "tests" / "test.sh").write_text("#!/bin/bash\n")
    (t / "solution").mkdir()
    (t / "solution" / "solve.sh").write_text("#!/bin/bash\n")
    (t / "instruction.md").write_text(f"calc.add subtracts; make it add ({name}, naïve).\n")
    (t / "task.toml").write_text(TASK_TOML)
    task = harbor.load_task(t)
    if name == "resolved":
        task.fail_to_pass, task.pass_to_pass = ["t::a"], ["t::b"]
    return task


class Folder:
    """A suite of the tasks above (one that does not load)."""

    name = "made"

    def __init__(self, root: Path):
        self.tasks = {name: _task(root, name) for name in (*PLAN, SCRIPTED)}

    def get(self, task_id: str) -> harbor.Task:
        if task_id == BROKEN:
            raise TaskError(f"task {task_id}: no task.toml", "TaskNotFound")
        return self.tasks[task_id]


class Box:
    """The stand-in sandbox: an id, solve.sh's exit code, nothing else."""

    ids = itertools.count()

    def __init__(self, task: harbor.Task):
        self.sandbox_id = f"sb-{next(self.ids)}"
        self.exit_code = PLAN.get(task.task_id, (0, {}))[0]

    async def execute(self, command: Any) -> Any:
        return SimpleNamespace(exit_code=self.exit_code, stdout="done: ünïcode\n", stderr="", timed_out=False)

    async def upload_dir(self, *args: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


async def _start(task: harbor.Task, *args: Any, **kwargs: Any) -> Box:
    return Box(task)


async def _report(box: Any, task: harbor.Task, limit: float) -> dict[str, Any]:
    return dict(PLAN[task.task_id][1]) if task.task_id in PLAN else {"exit_code": 0, "reward_txt": "1"}


async def _download(*args: Any) -> dict[str, bytes]:
    return {}


def _compare(before: Any, after: Any, protected: Any) -> workspace.Changes:
    return workspace.Changes(files={"calc.py": b"x"}, ignored=["link"],
                             diff="--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-    return a - b\n+    return a + b\n")


async def _policy(box: Any, task: harbor.Task) -> dict[str, Any]:
    return {"note": "héllo ✓", "n": [1, 2.5, None, True]}


async def _image(task: harbor.Task, progress: Any = None) -> str:
    return "verifier:1"


def write(out: Path) -> None:
    """Run the job over every task into ``out`` (JSONL): the oracle's tasks, then the callable policy's."""
    steps = itertools.count()
    clock = lambda: next(steps) * 0.0125  # noqa: E731 - every reading a fixed step later
    Box.ids = itertools.count()
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(rollout, "_start", _start), mock.patch.object(verifier, "run", _report), \
            mock.patch.object(verifier, "image", _image), mock.patch.object(workspace, "download", _download), \
            mock.patch.object(workspace, "compare", _compare), mock.patch.object(workspace, "apply", _download), \
            mock.patch("time.perf_counter", clock), mock.patch("time.time", clock), \
            mock.patch.object(jobs, "open_suite", lambda name, progress=None: folder), \
            mock.patch.object(jobs, "select_ids", lambda f, tasks, limit: tasks):
        folder = Folder(Path(tmp))
        parts = []
        for n, (policy, ids) in enumerate((("oracle", [*PLAN, BROKEN]), (_policy, [SCRIPTED]))):
            part = Path(tmp) / f"{n}.jsonl"
            options = RolloutOptions(base_url="http://127.0.0.1:1", policy=policy, verify_concurrency=1)
            asyncio.run(jobs.run_job(folder.name, options, tasks=ids, concurrency=1, out=part, record=False,
                                     traces="off", warn=lambda line: None))
            parts.append(part.read_bytes())
    out.write_bytes(b"".join(parts))


class TrainingBox:
    """The stand-in training client: an instance whose second step ends it, an evaluation with details."""

    async def create_instance(self, env_type: str, task_id: str, params: Any = None) -> dict[str, Any]:
        if task_id == "gone":
            raise KeyError("instance_id")
        return {"state": [{"role": "user", "content": f"solve {task_id} — ünï"}], "info": {"instance_id": task_id}}

    async def step(self, instance: str, action: Any) -> dict[str, Any]:
        last = action["content"].endswith("2")
        return {"state": [{"role": "tool", "content": "ok"}], "reward": 0.5 if last else 0, "is_terminated": last,
                "info": {"evaluation": {"accuracy": 1, "valid": True, "extra": "dropped"}} if instance == "graded" and last
                else {}}

    async def evaluate(self, instance: str, params: Any = None) -> dict[str, Any]:
        return {"accuracy": 0.25, "error": None, "result": [1, 2]}

    async def release_instance(self, instance: str) -> None:
        return None


class TrainingPolicy:
    """Two answers, then nothing more to say."""

    name = "scripted"

    def __init__(self) -> None:
        self.n = 0

    async def start(self, *args: Any) -> None:
        return None

    async def act(self, messages: list[Any]) -> dict[str, Any]:
        self.n += 1
        return {"role": "assistant", "content": f"answer {self.n}"}

    async def close(self) -> None:
        return None


def write_training(out: Path) -> None:
    """The training runner's records (``rock.training.runner.run_task`` through ``run_pool``) into ``out``: a task
    graded at its last step, one graded by evaluate, one whose instance cannot be created."""
    from rock.training import runner

    steps = itertools.count()
    box = TrainingBox()
    with mock.patch("time.perf_counter", lambda: next(steps) * 0.0125):
        asyncio.run(runner.run_pool(["graded", "evaluated", "gone"],
                                    lambda tid: runner.run_task(box, "bfcl", tid, TrainingPolicy()), 1, out))


if __name__ == "__main__":
    write(Path(sys.argv[1]))
    write_training(Path(sys.argv[2]))
