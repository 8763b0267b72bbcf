"""Rollout and training records as the job runners write them, through a real admin's sandboxes.

``write(url, root)`` runs ``rock.agentic.tasks.jobs.run_job`` over tasks of every kind of ending (one graded by
its test lists, one by the number test.sh writes to reward.txt, a test.sh that writes none, an agent killed by
SIGKILL, a task folder that does not load, a callable policy with a JSON result) and the training runner
(``rock.training.runner``) over BFCL tasks with the oracle policy and one task that does not exist. What differs
from run to run (sandbox ids, milliseconds, pytest's own durations, the temporary folder's path) is replaced by
fixed text in the line itself (``normalized``), so every other byte is as the runner wrote it.

It uses only what the runners offered before their record was a typed model, so the same code wrote the fixtures
with that older code (``PYTHONPATH=<old src>:. python -m tests.agentic_tasks.records.make_records OUT_DIR``,
starting its own bwrap admin); ``test_record.py`` runs it against today's code and compares the bytes."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from rock.agentic.tasks import humaneval_repo
from rock.agentic.tasks.jobs import run_job
from rock.agentic.tasks.rollout import RolloutOptions
from rock.sdk.training import AsyncTrainingSandbox
from rock.training import runner
from rock.training.policies import OraclePolicy
from tests.agentic_tasks.conftest import harbor_task

ROLLOUTS = "rollouts_written_by_main.jsonl"
TRAINING = "training_written_by_main.jsonl"
HUMANEVAL = "humaneval-000"
BFCL_TASKS = ["simple_python_0", "simple_python_1", "no_such_task_0"]
NO_NUMBER_SH = "#!/bin/bash\nmkdir -p /logs/verifier\necho 'naïve ✓ oops' | tee /logs/verifier/reward.txt\n"
KILLED_SH = "#!/bin/bash\necho 'about to die: ünïcode'\nkill -9 $$\n"


async def _result(box, task) -> dict:
    """A callable policy: what it returns is the harness's ``result``."""
    return {"note": "héllo ✓", "n": [1, 2.5, None, True], "task": task.task_id}


def _folder(root: Path) -> Path:
    """A folder suite: a task test.sh grades with reward.txt, one whose test.sh writes no number, one whose agent
    is killed, one that does not load (no task.toml)."""
    made = root / "made"
    harbor_task(made, "fix-add")
    harbor_task(made, "no-number", test_sh=NO_NUMBER_SH)
    killed = harbor_task(made, "killed")
    (killed / "solution" / "solve.sh").write_text(KILLED_SH)
    (made / "broken" / "tests").mkdir(parents=True)
    for t in ("fix-add", "no-number", "killed"):
        (made / t / "instruction.md").write_text(f"calc.add subtracts; make it add ({t}, naïve).\n")
    return made


def normalized(line: str, root: Path) -> str:
    """``line`` with what differs from run to run replaced by fixed text, every other byte kept."""
    line = line.replace(str(root), "ROOT")
    line = re.sub(r'"(agent_sandbox|verifier_sandbox)": "[^"]*"', r'"\1": "SANDBOX"', line)
    line = re.sub(r'("\w+_ms": )-?[0-9.e+-]+', r"\g<1>0", line)
    line = re.sub(r'("steps_ms": )(\[[^\]]*\])', lambda m: m.group(1) + re.sub(r"[0-9.e+-]+", "0", m.group(2)), line)
    return re.sub(r" in [0-9.]+s\b", " in 0s", line)  # pytest's summary line says how long it took


async def _rollouts(url: str, root: Path, out: Path) -> None:
    humaneval_repo.build(out=root / "humaneval-repo")
    made = _folder(root)
    jobs = ((str(root / "humaneval-repo"), "oracle", [HUMANEVAL]),
            (str(made), "oracle", ["fix-add", "no-number", "killed", "broken"]),
            (str(made), _result, ["fix-add"]))
    parts = []
    for n, (suite, policy, tasks) in enumerate(jobs):
        part = root / f"{n}.jsonl"
        await run_job(suite, RolloutOptions(base_url=url, policy=policy), tasks=tasks, concurrency=1, out=part,
                      record=False, traces="off", warn=lambda line: None)
        parts.append(part.read_text(encoding="utf-8"))
    out.write_text("".join(normalized(line, root) + "\n" for line in "".join(parts).splitlines()), encoding="utf-8")


async def _training(url: str, root: Path, out: Path) -> None:
    part = root / "training.jsonl"
    async with AsyncTrainingSandbox(url) as box:
        await runner.run_pool(BFCL_TASKS, lambda tid: runner.run_task(box, "bfcl", tid, OraclePolicy()), 1, part)
    out.write_text("".join(normalized(line, root) + "\n" for line in part.read_text(encoding="utf-8").splitlines()),
                   encoding="utf-8")


def raw(root: Path) -> list[str]:
    """The lines the runners wrote in ``write``, as they wrote them: the rollouts', then the training tasks'."""
    return [line for name in ("0.jsonl", "1.jsonl", "2.jsonl", "training.jsonl")
            for line in (root / name).read_text(encoding="utf-8").splitlines()]


def write(url: str, root: Path, out: Path) -> None:
    """The records of the admin at ``url``'s rollouts and training tasks, normalized, into ``out/ROLLOUTS`` and
    ``out/TRAINING``; ``root`` (an empty folder) gets the tasks and the runners' own files (``raw(root)``)."""
    asyncio.run(_rollouts(url, root, out / ROLLOUTS))
    asyncio.run(_training(url, root, out / TRAINING))


if __name__ == "__main__":
    import tempfile

    from tests.admin.harness import Admin

    admin = Admin("bwrap").start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            write(admin.url, Path(tmp), Path(sys.argv[1]))
    finally:
        admin.stop(stop_sandboxes=True)
