"""The rollout runner: a policy over a suite's split, N tasks at a time, with a progress bar; one
JSONL line per task (messages, rewards, timings) and a results table (mean reward, pass rate,
by category)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from rock.agentic.record import Scored, TaskRecord
from rock.sdk.training import AsyncTrainingSandbox, TrainingError
from rock.training.policies import Policy

MAX_STEPS = 64
R = TypeVar("R", bound=Scored)


def category_of(env_type: str, task_id: str) -> str:
    """The category a task's result is counted under: BFCL's category, reasoning-gym's generator, else the
    suite."""
    if env_type == "bfcl":
        return task_id.rsplit("_", 1)[0]
    if env_type == "reasoning_gym":
        return task_id.split("/")[0]
    return env_type


async def run_task(box: AsyncTrainingSandbox, env_type: str, task_id: str, policy: Policy,
                   params: dict | None = None, max_steps: int = MAX_STEPS) -> TaskRecord:
    """One task attempt through the training client: create, then ``policy.act`` and ``step`` until the
    task ends or ``max_steps``, then evaluate and release. The record (messages, rewards, reward,
    passed, timings, error); a failure is recorded, not raised."""
    t0 = time.perf_counter()
    steps_ms: list[float] = []
    # Every key given here, defaults too: the record writes the keys it was given, in this order (the job file's).
    rec = TaskRecord(env_type=env_type, task_id=task_id, category=category_of(env_type, task_id), policy=policy.name,
                     messages=[], rewards=[], reward=0.0, passed=False, timings={"steps_ms": steps_ms}, error=None)
    instance = None
    try:
        t = time.perf_counter()
        first = await box.create_instance(env_type, task_id, params=params)
        rec.timings["create_ms"] = (time.perf_counter() - t) * 1000
        instance = first["info"]["instance_id"]
        tools = await box.get_info(instance) if policy.name == "openai" else None
        await policy.start(env_type, task_id, first, tools)
        rec.messages = list(first["state"])
        details = None
        for _ in range(max_steps):
            action = await policy.act(rec.messages)
            rec.messages.append(action)
            t = time.perf_counter()
            out = await box.step(instance, action)
            steps_ms.append((time.perf_counter() - t) * 1000)
            rec.messages.extend(out["state"])
            rec.rewards.append(out["reward"])
            if out["is_terminated"]:
                # Suites that grade the last step (BFCL, reasoning-gym) send evaluate's details
                # with it; the others (HumanEval: hidden tests) are graded by evaluate.
                details = (out.get("info") or {}).get("evaluation")
                break
        if not isinstance(details, dict):
            t = time.perf_counter()
            details = await box.evaluate(instance, params={"details": True})
            rec.timings["evaluate_ms"] = (time.perf_counter() - t) * 1000
        rec.reward = float(details.get("accuracy", 0.0))
        rec.passed = rec.reward >= 1.0
        rec.details = {k: v for k, v in details.items() if k in ("valid", "error", "error_type", "result")}
    except (TrainingError, KeyError, ValueError, OSError) as exc:
        rec.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    except Exception as exc:  # noqa: BLE001 - one task's failure (an HTTP error of the model) is its record
        rec.error = f"{type(exc).__name__}: {exc}"
    finally:
        if instance is not None:
            try:
                await box.release_instance(instance)
            except Exception:  # noqa: BLE001 - released by the idle TTL anyway
                pass
        await policy.close()
    rec.timings["steps_ms"] = steps_ms  # the record took a copy of the list it was given
    rec.timings["total_ms"] = (time.perf_counter() - t0) * 1000
    return rec


async def run_job(base_url: str, env_type: str, split: str, make_policy: Callable[[], Policy], concurrency: int = 8,
                  limit: int | None = None, params: dict | None = None, out: Path | None = None,
                  task_params: dict | None = None, token: str | None = None, on_done: Callable | None = None) -> dict:
    """Run ``make_policy``'s policies over a suite's ``split`` (the first ``limit`` ids) at
    ``concurrency``; records go to ``out`` as they finish. The summary by category."""
    async with AsyncTrainingSandbox(base_url, token, max_connections=max(16, concurrency * 2)) as box:
        ids = await box.get_env_profile(env_type, split, params)
        if limit:
            ids = ids[:limit]
        t0 = time.perf_counter()
        records = await run_pool(ids, lambda tid: run_task(box, env_type, tid, make_policy(), task_params),
                                 concurrency, out, on_done)
        return summarize(env_type, split, records, time.perf_counter() - t0)


async def run_pool(ids: list, run_one: Callable[[Any], Awaitable[R]], concurrency: int, out: Path | None = None,
                   on_done: Callable[[R, int, int], Any] | None = None, append: bool = False) -> list[R]:
    """``run_one(id)`` for every id, ``concurrency`` at a time; each record is written to ``out``
    (its JSONL line, as it finishes) and passed to ``on_done(rec, n, of)``. The agentic jobs
    (``rock.agentic.tasks.jobs``) run on this too."""
    queue: asyncio.Queue = asyncio.Queue()
    for tid in ids:
        queue.put_nowait(tid)
    records: list[R] = []
    sink = open(out, "a" if append else "w") if out else None

    async def worker():
        while not queue.empty():
            rec = await run_one(queue.get_nowait())
            records.append(rec)
            if sink:
                sink.write(rec.line() + "\n")
                sink.flush()
            if on_done:
                on_done(rec, len(records), len(ids))

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(ids) or 1)))))
    finally:
        if sink:
            sink.close()
    return records


def summarize(env_type: str, split: str, records: Sequence[Scored], seconds: float) -> dict:
    """A job's summary: tasks, mean reward, pass rate and errors, overall and by category, with the wall
    time."""
    by: dict[str, list[Scored]] = defaultdict(list)
    for r in records:
        by[r.category or ""].append(r)

    def stats(rs: Sequence[Scored]) -> dict:
        return {"tasks": len(rs), "mean_reward": statistics.fmean(r.reward for r in rs) if rs else 0.0,
                "pass_rate": sum(r.passed for r in rs) / len(rs) if rs else 0.0,
                "errors": sum(1 for r in rs if r.error)}

    return {"env": env_type, "split": split, **stats(records), "seconds": round(seconds, 3),
            "tasks_per_s": round(len(records) / seconds, 3) if seconds else 0.0,
            "by_category": {c: stats(rs) for c, rs in sorted(by.items())}}
