"""Rollout jobs over a suite: the SDK call for trainers (``run_job`` async, ``run_job_sync``) and
what ``rock job run --suite`` runs. The pool and the summary are the training jobs' own
(``rock.training.runner``); one JSONL line per rollout; ``resume`` skips tasks that already
have a finished record (no error) in the output file and appends the rest.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from rock.agentic import tracing
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.errors import TaskError
from rock.agentic.tasks.report import JobReport
from rock.agentic.tasks.rollout import RolloutOptions, make_harness, rollout
from rock.agentic.tasks.suites import open_suite, select_ids
from rock.training.runner import run_pool, summarize


def traces_file(out: Path | None, traces: str | Path | None) -> Path | None:
    """Where a job's OTLP/JSON trace lines go: ``traces`` ("off": nowhere), else ``$ROCK_TRACES`` (the same), else
    beside ``out`` (``X.jsonl`` -> ``X.traces.jsonl``), else nowhere."""
    chosen = traces if traces is not None else os.environ.get("ROCK_TRACES")
    if chosen is not None and str(chosen) != "":
        return None if str(chosen) == "off" else Path(chosen)
    return None if out is None else Path(out).with_suffix(".traces.jsonl")


def otlp_endpoint(endpoint: str | None) -> str | None:
    """The OTLP/HTTP collector for traces: ``endpoint``, else OpenTelemetry's own variables
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``), else none."""
    return (endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None)


def finished(out: Path | None, harness: str | None = None, policy: str | None = None) -> dict[str, RolloutRecord]:
    """Records of finished rollouts in a JSONL file (the last one per task wins), of this harness
    and policy when given (a file of another policy's rollouts resumes nothing)."""
    done: dict[str, RolloutRecord] = {}
    if out is None or not Path(out).exists():
        return done
    for line in Path(out).read_text(encoding="utf-8").splitlines():
        try:
            rec = RolloutRecord.from_line(line)
        except ValueError:
            continue  # a line cut short when the job was stopped, or not a rollout's
        if (policy and rec.policy != policy) or (harness and rec.harness.name != harness):
            continue
        if rec.task_id and rec.error is None:
            done[rec.task_id] = rec
    return done


def _loadable(folder, ids: list[str]) -> list:
    """The tasks of ``ids`` that load (a broken one is its rollout's error later)."""
    tasks = []
    for task_id in ids:
        try:
            tasks.append(folder.get(task_id))
        except Exception:  # noqa: BLE001 - reported by its rollout
            continue
    return tasks


async def run_job(suite: str, options: RolloutOptions, tasks: list[str] | None = None, limit: int | None = None,
                  concurrency: int = 8, out: Path | None = None, resume: bool = False,
                  on_done: Callable[[RolloutRecord, int, int], Any] | None = None, on_start: Callable | None = None,
                  progress: Callable[[str], None] | None = None, record: bool = True,
                  traces: str | Path | None = None, otlp: str | None = None,
                  warn: Callable[[str], None] | None = None) -> dict:
    """Roll out ``options.harness`` / ``options.policy`` over the suite's tasks; the summary
    (the training runner's: tasks, mean_reward, pass_rate, errors, by_category) plus ``records``, each as the JSON
    its line holds. ``on_done(record, n, of)`` gets each ``RolloutRecord`` as it finishes.
    A built-in suite not built on this host is built first, saying so through ``progress``
    (default: lines on stderr). What the job should know before it starts (tasks whose memory is below the
    agent's need) goes to ``warn`` (default: lines on stderr) and the summary's ``warnings``. With ``record`` the
    admin keeps the job too (its UI's Jobs pages, live; ``job_id`` in the summary), unless it cannot, which never
    stops the job. With the ``tracing`` extra installed, every rollout and its phases are OpenTelemetry spans,
    written as OTLP/JSON lines to ``traces`` (default: beside ``out``; "off": none) and sent to the OTLP/HTTP
    collector ``otlp`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    folder = await asyncio.to_thread(open_suite, suite, progress)  # a first build takes minutes
    ids = select_ids(folder, tasks, limit)
    harness_factory = lambda: make_harness(options.harness)  # noqa: E731
    probe = harness_factory()  # a wrong harness or policy name fails here, before any sandbox
    if isinstance(options.policy, str) and probe.policies and options.policy not in probe.policies:
        raise TaskError(f"harness {probe.name} runs the policies {', '.join(probe.policies)}, not {options.policy!r}",
                        "BadRequest")
    probe.check(options)
    warnings = probe.warnings(await asyncio.to_thread(_loadable, folder, ids))
    for line in warnings:
        if warn is not None:
            warn(line)
        else:
            print(f"warning: {line}", file=sys.stderr, flush=True)
    kept = finished(out, options.harness, options.policy if isinstance(options.policy, str) else None) if resume else {}
    todo = [t for t in ids if t not in kept]
    if on_start:
        on_start(len(todo), len(kept))

    async def one(task_id: str) -> RolloutRecord:
        try:
            task = folder.get(task_id)
        except Exception as exc:  # noqa: BLE001 - a broken task folder is that task's record
            return RolloutRecord(suite=folder.name, task_id=task_id, category=folder.name, reward=0.0, passed=False,
                                 resolved=False, pass_rate=0.0, error=getattr(exc, "message", str(exc)))
        queue_ms = round((time.time() - queued_at) * 1000, 1)  # waited for a slot of the job's concurrency
        if tracer is None:
            rec = await rollout(task, options, harness_factory(), folder.name)
        else:
            with tracer.rollout(task_id, {"rock.suite": folder.name, "rock.harness": options.harness,
                                          "rock.policy": policy_name, "rock.job_id": report.job_id if report else ""},
                                queued_at=queued_at) as span:
                rec = await rollout(task, options, harness_factory(), folder.name)
                tracing.end_rollout(span, rec)
        rec.timings = {"queue_ms": queue_ms, **rec.timings}
        return rec

    if resume and out is not None and Path(out).exists() and not Path(out).read_bytes().endswith(b"\n"):
        with open(out, "a") as f:
            f.write("\n")  # a line cut short by a stop: the next record starts on its own line
    report = JobReport(options.base_url, options.token) if record else None
    policy_name = options.policy if isinstance(options.policy, str) else "script"
    tracer: tracing.Tracing | None = None
    delivery: dict = {}
    if report is not None:
        await report.open(folder.name, options.harness, policy_name, len(todo),
                          (options.policy_options or {}).get("model"), concurrency)

    async def reported(task_id: str) -> RolloutRecord:
        rec = await one(task_id)
        if report is not None:
            await report.add(rec)
        return rec

    t0, queued_at = time.perf_counter(), time.time()
    trace_path = traces_file(out, traces)
    tracer = tracing.Tracing.open(trace_path, otlp_endpoint(otlp))
    try:
        records = await run_pool(todo, reported, concurrency, out, on_done, append=resume)
    except BaseException:
        if report is not None:
            await report.end({"stopped": True})
            await report.aclose()
        raise
    finally:
        if tracer is not None:
            delivery = await asyncio.to_thread(tracer.close)  # the file's spans all; a collector's, bounded
    every = [kept[t] for t in ids if t in kept] + records
    summary = summarize(folder.name, "all", every, time.perf_counter() - t0)
    summary.update(harness=options.harness, policy=policy_name, skipped=len(kept), ran=len(records), warnings=warnings,
                   mean_pass_rate=sum(r.pass_rate for r in every) / len(every) if every else 0.0,
                   tasks_per_s=round(len(records) / (time.perf_counter() - t0), 3) if records else 0.0)
    if tracer is not None and trace_path is not None:
        summary["traces"] = str(trace_path)
    if delivery.get("undelivered"):
        summary["trace_spans_undelivered"] = delivery["undelivered"]
    if report is not None:
        summary["job_id"] = report.job_id
        await report.end(summary)
        await report.aclose()
    return {**summary, "records": [r.to_json() for r in every]}


def run_job_sync(suite: str, options: RolloutOptions, **kwargs) -> dict:
    """``run_job`` for code without an event loop."""
    return asyncio.run(run_job(suite, options, **kwargs))
