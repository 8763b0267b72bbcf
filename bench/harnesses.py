"""Third-party agent harnesses on agentic tasks through a real admin: mini-swe-agent 2.4.6
(``--harness mini-swe-agent``) with the oracle policy over the first pypi-bugs tasks (20 in a
quick run, 60 in a full one): every rollout should be resolved (reward 1.0) with the reference
fix made through mini's bash tool, answered by the job's trainer over the Chat protocol.

Records ``agentic_harness_oracle`` (how many came out as expected, the agent's own time per
rollout, p50/p99) per backend. Needs the suites built and the harness's image (set-up makes
both; the image is otherwise built here first, minutes). A full-run part (or ``--only harnesses``).
"""

from __future__ import annotations

import asyncio

from bench.admin import AdminProcess
from bench.report import Context, record

CONCURRENCY = 4  # each rollout runs mini-swe-agent (a few seconds of imports) beside its verifier


async def run(ctx: Context) -> list[dict]:
    from rock.agentic import mini_swe
    from rock.agentic.tasks.jobs import run_job
    from rock.agentic.tasks.rollout import RolloutOptions
    from rock.agentic.tasks.suites import open_suite

    image = await mini_swe.ensure_image(progress=ctx.progress)
    ids = open_suite("pypi-bugs").ids()[: ctx.n(20, 60)]
    records = []
    for backend in ctx.backends:
        if backend == "local":
            continue  # the verifier needs a fresh, isolated sandbox
        admin = AdminProcess(backend, prefix="rock-bench-harness-")
        base_url = await asyncio.to_thread(admin.start)
        try:
            ctx.progress(f"harnesses {backend}: mini-swe-agent, oracle, {len(ids)} pypi-bugs tasks")
            options = RolloutOptions(base_url=base_url, harness="mini-swe-agent", policy="oracle")
            s = await run_job("pypi-bugs", options, tasks=ids, concurrency=CONCURRENCY)
            wrong = sorted(r["task_id"] for r in s["records"] if r["reward"] != 1.0 or r["error"])
            agent_s = [r["timings"]["agent_ms"] / 1000 for r in s["records"] if "agent_ms" in r["timings"]]
            calls = sorted({len(r["model_calls"]) for r in s["records"]})
            records.append(record("agentic_harness_oracle", backend, agent_s, attempts=s["tasks"],
                                  env_id="pypi-bugs", harness="mini-swe-agent", policy="oracle", image=image.tag,
                                  expected_reward=1.0, as_expected=s["tasks"] - len(wrong), wrong=wrong[:50],
                                  mean_reward=s["mean_reward"], model_calls_per_rollout=calls,
                                  concurrency=CONCURRENCY, seconds=s["seconds"],
                                  note="p50/p99: the agent's own time per rollout (mini's start, its calls, "
                                       "the fix), not the verifier's"))
        finally:
            await asyncio.to_thread(admin.stop)
    return records
