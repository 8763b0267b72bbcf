"""``rock job run``: evaluate a policy over a training suite through a running admin."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from rock.cli import add_admin_options
from rock.cli.agentic_job import cmd_run_suite
from rock.cli.job_view import cmd_view
from rock.cli.output import Out, results_table


def add_parser(sub) -> None:
    """Register ``rock job`` (run, export) on the ``rock`` parser ``sub``."""
    p = sub.add_parser("job", help="rollout jobs over training suites (bfcl, humaneval, reasoning_gym) and agentic "
                       "task suites (pypi-bugs, humaneval-repo, a folder of Harbor tasks)")
    s = p.add_subparsers(dest="job_cmd", required=True)
    run = s.add_parser("run", help="run a policy over a suite's split; JSONL trajectories and a results table")
    add_admin_options(run)
    run.add_argument("--env", help="a training suite: bfcl, humaneval or reasoning_gym")
    run.add_argument("--suite", help="an agentic suite: pypi-bugs, humaneval-repo, or a folder of Harbor tasks")
    run.add_argument("--split", default="val", help="train, val (test = val) or all")
    run.add_argument("--policy", default="oracle", help="oracle, null or openai; agentic: oracle, null (--harness none), "
                     "and replay, openai (--harness ours)")
    run.add_argument("--harness", default="none", help="agentic: the agent harness: none (the policy runs directly), "
                     "ours (our coding agent over the Chat protocol), mini-swe-agent (mini-swe-agent 2.4.6 from PyPI; "
                     "oracle, null), claude-code (Claude Code 2.1.328 from npm, on Messages; oracle, null), codex "
                     "(Codex 0.169.0 from npm, on Responses; oracle, null), qwen-code (Qwen Code 0.24.4 from npm; oracle, null), "
                     "opencode (opencode 1.18.33 from npm; oracle, null)")
    run.add_argument("--task", action="append", help="agentic: this task id (repeatable)")
    run.add_argument("--tasks", help="agentic: task ids, comma-separated, or @FILE with one per line")
    run.add_argument("--all", action="store_true", help="agentic: every task of the suite (the default)")
    run.add_argument("--resume", action="store_true", help="agentic: skip tasks with a finished record in --out")
    run.add_argument("--jsonl", action="store_true", help="progress as JSON lines on stderr instead of a bar")
    run.add_argument("--replay", type=Path, help="agentic --policy replay: a recorded trajectory (ROCK's JSONL)")
    run.add_argument("--model", help="model name for --policy openai")
    run.add_argument("--policy-url", help="OpenAI-compatible endpoint for --policy openai (…/v1); the admin's URL is "
                     "--url (or rock's global --base-url, before 'job')")
    # Here --base-url used to name the policy's endpoint and silently replaced the admin's URL (the
    # global --base-url has the same name): it is refused with what to write instead.
    run.add_argument("--base-url", dest="job_base_url", help=argparse.SUPPRESS)
    run.add_argument("--api-key", help="API key for --policy openai (or $OPENAI_API_KEY)")
    run.add_argument("--concurrency", type=int, default=8)
    run.add_argument("--limit", type=int, help="only the first K tasks")
    run.add_argument("--categories", help="bfcl categories or groups, comma-separated (default multi_turn)")
    run.add_argument("--params", default="{}", help="profile params as JSON (reasoning_gym: generators, size)")
    run.add_argument("--out", type=Path, help="JSONL of trajectories (default: job-<env>-<split>-<policy>.jsonl)")
    run.add_argument("--traces", help="agentic: OTLP/JSON lines of each rollout's spans (default: beside --out, "
                     "X.traces.jsonl; 'off': none); needs the tracing extra")
    run.add_argument("--otlp-endpoint", help="agentic: also send the spans to this OTLP/HTTP collector (default: "
                     "$OTEL_EXPORTER_OTLP_ENDPOINT)")
    run.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    run.set_defaults(func=cmd_run)
    exp = s.add_parser("export", help="training-ready trajectories from a job's records: token ids, loss masks, "
                       "logprobs and the reward, one row per sequence (docs/agentic-tasks.md)")
    exp.add_argument("records", type=Path, help="the job's JSONL (rock job run --out)")
    exp.add_argument("--format", dest="fmt", choices=["jsonl", "parquet"], default="jsonl",
                     help="parquet needs pyarrow")
    exp.add_argument("--out", type=Path, help="where to write (default: the records' name with .tokens.jsonl/.parquet)")
    exp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    exp.set_defaults(func=cmd_export)
    view = s.add_parser("view", help="a job the admin keeps, in the terminal: pass rate, errors per task, time per "
                        "phase; with ROLLOUT, that rollout's model calls in order, diff and verifier results")
    add_admin_options(view)
    view.add_argument("job", help="the job's id (job_id in rock job run --json's summary, or the UI's /ui/jobs)")
    view.add_argument("rollout", nargs="?", type=int, help="a rollout's number in the job (0, 1, ...)")
    view.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    view.set_defaults(func=cmd_view)


def cmd_export(args, out: Out) -> int:
    """``rock job export``: the job's rollouts as token sequences for a trainer."""
    from rock.agentic import trajectories

    dest = args.out or args.records.with_suffix(".tokens.jsonl" if args.fmt == "jsonl" else ".parquet")
    try:
        lines = [json.loads(line) for line in args.records.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        out.error(f"cannot read the job's records {args.records}: {exc}")
        return 2
    episodes = list(trajectories.from_job(lines))
    try:
        n = trajectories.write(episodes, dest, args.fmt)
    except ImportError as exc:
        out.error(str(exc))
        return 2
    untokenized = sum(1 for ep in episodes for c in ep["calls"] if c["tokens"] is None and c["status"] == "success")
    out.record({"episodes": len(episodes), "rows": n, "out": str(dest), "calls_without_tokens": untokenized},
               lines=[f"{len(episodes)} episodes, {n} sequences -> {dest}"
                      + (f" ({untokenized} calls had no token ids: see each row's reason)" if untokenized else "")])
    return 0


def cmd_run(args, out: Out) -> int:
    """``rock job run``: run a policy over a suite's split; JSONL trajectories and a results table."""
    import os

    if getattr(args, "job_base_url", None):
        from rock.errors import BadRequest

        raise BadRequest("'rock job run --base-url' is ambiguous: the policy's endpoint is --policy-url URL, the "
                         "admin's is --url URL (or 'rock --base-url URL job run ...')")
    if bool(args.env) == bool(args.suite):
        from rock.errors import BadRequest

        raise BadRequest("give --env (a training suite) or --suite (an agentic suite), one of them")
    if args.suite:
        return cmd_run_suite(args, out)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rock.training.policies import make_policy
    from rock.training.runner import run_job

    if args.policy not in ("oracle", "null", "openai"):
        from rock.errors import BadRequest

        raise BadRequest(f"--policy {args.policy!r}: training suites run oracle, null or openai")
    params = json.loads(args.params)
    if args.categories:
        params["categories"] = [c.strip() for c in args.categories.split(",") if c.strip()]
    make = make_policy(args.policy, args.model, args.policy_url, args.api_key or os.environ.get("OPENAI_API_KEY"))
    path = args.out or Path(f"job-{args.env}-{args.split}-{args.policy}.jsonl")
    from rich.console import Console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("reward {task.fields[mean]:.3f}"), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:  # progress on stderr: stdout stays the table / JSON
        task = bar.add_task(f"{args.env}/{args.split} {args.policy}", total=None, mean=0.0)
        total = [0.0]

        def done(rec, n, of):
            total[0] += rec.reward
            bar.update(task, completed=n, total=of, mean=total[0] / n)

        summary = asyncio.run(run_job(args.url, args.env, args.split, make, args.concurrency, args.limit, params, path,
                                      token=args.token, on_done=done))
    summary["trajectories"] = str(path)
    if out.as_json:
        out.json(summary)
        return 0
    results_table(out, summary, f"{args.env} {args.split} · {args.policy} · {summary['seconds']} s · "
                                f"{summary['tasks_per_s']} tasks/s")
    out.console.print(f"trajectories: {path}")
    return 0
