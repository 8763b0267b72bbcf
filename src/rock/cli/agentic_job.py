"""``rock job run --suite``: rollouts over an agentic task suite (``rock.agentic.tasks.jobs``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from rock.cli.output import Out, results_table


def task_ids(args) -> list[str] | None:
    """The task ids that ``--task`` and ``--tasks`` (a comma list, or ``@file`` with one id a line) name;
    None for the whole split."""
    ids = list(args.task or [])
    if args.tasks:
        if args.tasks.startswith("@"):
            ids += [line.strip() for line in Path(args.tasks[1:]).read_text().splitlines() if line.strip()]
        else:
            ids += [t.strip() for t in args.tasks.split(",") if t.strip()]
    return ids or None


def cmd_run_suite(args, out: Out) -> int:
    """``rock job run`` over an agentic suite: each task's rollout in its own sandbox, records as JSONL and
    a results table."""
    from rock.agentic.tasks.jobs import run_job
    from rock.agentic.tasks.rollout import RolloutOptions

    options = RolloutOptions(base_url=args.url, token=args.token, harness=args.harness, policy=args.policy,
                             policy_options={"model": args.model, "base_url": args.policy_url,
                                             "api_key": args.api_key or os.environ.get("OPENAI_API_KEY"),
                                             "replay": args.replay})
    name = Path(args.suite).name or args.suite
    path = args.out or Path(f"job-{name}-{args.harness}-{args.policy}.jsonl")
    kwargs = dict(tasks=task_ids(args), limit=args.limit, concurrency=args.concurrency, out=path, resume=args.resume,
                  traces=args.traces, otlp=args.otlp_endpoint)
    if args.jsonl:
        def event(kind, **fields):
            print(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}), file=sys.stderr, flush=True)

        summary = asyncio.run(run_job(args.suite, options, **kwargs,
                                      progress=lambda line: event("build", suite=name, message=line),
                                      warn=lambda line: event("warning", message=line),
                                      on_start=lambda todo, skipped: event("start", tasks=todo, skipped=skipped),
                                      on_done=lambda rec, n, of: event("rollout", task_id=rec.task_id, n=n, of=of,
                                                                       reward=rec.reward, error=rec.error)))
        event("end", tasks=summary["tasks"], mean_reward=summary["mean_reward"])
    else:
        from rock.agentic.tasks.suites import open_suite

        open_suite(args.suite)  # a built-in suite not built here is built now, its progress lines before the bar
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("reward {task.fields[mean]:.3f}"), TimeRemainingColumn(),
                      console=Console(stderr=True)) as bar:  # stderr: stdout stays the table / JSON
            task = bar.add_task(f"{name} {args.harness}/{args.policy}", total=None, mean=0.0)
            total = [0.0]

            def done(rec, n, of):
                total[0] += rec.reward
                bar.update(task, completed=n, total=of, mean=total[0] / n)

            summary = asyncio.run(run_job(args.suite, options, **kwargs, on_done=done))
    records = summary.pop("records")
    summary["trajectories"] = str(path)
    # A job none of whose rollouts ran (every one an error: an admin or policy that does not
    # answer, a suite whose every task is broken) failed, whatever it printed.
    code = 1 if summary["ran"] and all(r.get("error") for r in records[-summary["ran"]:]) else 0
    if out.as_json:
        out.json(summary)
        return code
    results_table(out, summary, f"{name} · {args.harness}/{args.policy} · {summary['seconds']} s · "
                                f"{summary['tasks_per_s']} tasks/s" + (f" · {summary['skipped']} resumed" if summary["skipped"] else ""))
    out.console.print(f"trajectories: {path}")
    if code:
        first = next(r["error"] for r in records if r.get("error"))
        out.console.print(f"[red]every rollout failed[/red]; the first: {first}")
    return code
