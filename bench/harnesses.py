"""Third-party agent harnesses on agentic tasks through a real admin: mini-swe-agent 2.4.6 and the
npm terminal agents (Claude Code on Messages, Codex on Responses, Qwen Code and opencode on chat
completions), each with the oracle policy over the first 20 pypi-bugs tasks (60 for mini-swe-agent
in a full run) and the null policy (5 tasks in a quick run, 20 in a full one): every oracle
rollout should be resolved (reward 1.0) with the reference fix made through the agent's own shell
tool, every null one not (0.0), every model call recorded (with the native request for Messages and
Responses), answered by the job's trainer over the Chat protocol.

Records per harness and backend:
- ``agentic_harness_oracle`` / ``agentic_harness_null``: how many came out as expected, the mean
  reward, the calls recorded and those with their native request; p50/p99 of the agent's time.
- ``harness_rollout_overhead_ms`` (oracle rollouts): a rollout's time minus the policy's time (the
  union of its model calls' spans, from the call's arrival to its answer) and the verifier's
  (its wait for a slot and its run): the agent sandbox, the harness's install and its own work
  (start-up, tool runs), the workspace diff. Floor: the same for our standard-library harness
  (``ours``) on the same tasks in the same run.

Needs the suites built and the harnesses' images (built here first when missing: minutes each).
A full-run part (or ``--only harnesses``); ``ROCK_BENCH_HARNESSES=claude-code,opencode`` picks some.
"""

from __future__ import annotations

import asyncio
import os
import statistics

from bench.admin import AdminProcess
from bench.report import Context, record

CONCURRENCY = 4  # each rollout runs an agent (seconds of start-up) beside its verifier
TERMINAL = ("claude-code", "codex", "qwen-code", "opencode")
NATIVE = {"claude-code": "messages", "codex": "responses"}  # the others speak chat completions itself


def policy_s(calls: list[dict]) -> float:
    """The time the rollout waited on its policy: the union of its calls' spans (a harness may
    have two calls open at once, e.g. a title beside the main turn)."""
    spans = sorted((c["start_time"], c["end_time"]) for c in calls if c.get("end_time"))
    total, end = 0.0, float("-inf")
    for s, e in spans:
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def overhead_s(rec: dict) -> float:
    """Rollout time minus the policy's and the verifier's time."""
    t = rec["timings"]
    verifier_ms = t.get("verify_wait_ms", 0.0) + t.get("verify_ms", 0.0)
    return (t["total_ms"] - verifier_ms) / 1000 - policy_s(rec["model_calls"])


def phases(records: list[dict]) -> dict:
    """Where the overhead goes, each phase's median: the agent sandbox's start, the harness's install,
    its own work (its run less the policy's time), the workspace diff."""
    rows = [{**t, "harness_own_ms": t.get("agent_ms", 0.0) - t.get("harness_install_ms", 0.0) - policy_s(r["model_calls"]) * 1000}
            for r in records for t in [r["timings"]]]
    keys = ("agent_setup_ms", "harness_install_ms", "harness_own_ms", "diff_ms")
    return {k: round(statistics.median(r[k] for r in rows if k in r), 1) for k in keys if any(k in r for r in rows)}


def calls_summary(harness: str, records: list[dict]) -> dict:
    calls = [c for r in records for c in r["model_calls"]]
    api = NATIVE.get(harness)
    native = [c for c in calls if api and (c.get("native") or {}).get("api") == api and c["native"].get("request")]
    return {"calls_recorded": len(calls), "calls_succeeded": sum(c["status"] == "success" for c in calls),
            "calls_with_native_request": len(native) if api else None, "native_api": api,
            "rollouts_without_calls": sum(not r["model_calls"] for r in records)}


async def one(base_url: str, backend: str, harness: str, policy: str, ids: list[str],
              ctx: Context) -> tuple[dict, list]:
    from rock.agentic.tasks.jobs import run_job
    from rock.agentic.tasks.rollout import RolloutOptions

    ctx.progress(f"harnesses {backend}: {harness}, {policy}, {len(ids)} pypi-bugs tasks")
    s = await run_job("pypi-bugs", RolloutOptions(base_url=base_url, harness=harness, policy=policy), tasks=ids,
                      concurrency=CONCURRENCY)
    want = 1.0 if policy == "oracle" else 0.0
    wrong = sorted(r["task_id"] for r in s["records"] if r["reward"] != want or r["error"])
    errors = sorted({str(r["error"] or r["harness"].get("error"))[:200] for r in s["records"]
                     if r["error"] or r["harness"].get("error")})
    agent_s = [r["timings"]["agent_ms"] / 1000 for r in s["records"] if "agent_ms" in r["timings"]]
    rec = record(f"agentic_harness_{policy}", backend, agent_s, attempts=s["tasks"], env_id="pypi-bugs",
                 harness=harness, policy=policy, expected_reward=want, as_expected=s["tasks"] - len(wrong),
                 wrong=wrong[:50], errors=errors[:5], mean_reward=s["mean_reward"], concurrency=CONCURRENCY,
                 seconds=s["seconds"], **calls_summary(harness, s["records"]),
                 note="p50/p99: the agent's own time per rollout (its start, its calls, the fix), not the verifier's")
    ctx.progress(f"harnesses {backend}: {harness} {policy}: {rec['as_expected']}/{s['tasks']} as expected, mean reward "
                 f"{s['mean_reward']}, {rec['calls_recorded']} calls ({rec['calls_with_native_request']} with native "
                 f"request), {s['seconds']} s; {errors[:2]}")
    return rec, [r for r in s["records"] if not r["error"]]


async def run(ctx: Context) -> list[dict]:
    from rock.agentic import mini_swe
    from rock.agentic.tasks.suites import open_suite

    wanted = [h for h in os.environ.get("ROCK_BENCH_HARNESSES", "").split(",") if h]
    harnesses = wanted or ["mini-swe-agent", *TERMINAL]
    if "mini-swe-agent" in harnesses:
        await mini_swe.ensure_image(progress=ctx.progress)
    all_ids = open_suite("pypi-bugs").ids()
    records = []
    for backend in ctx.backends:
        if backend == "local":
            continue  # the verifier needs a fresh, isolated sandbox
        admin = AdminProcess(backend, prefix="rock-bench-harness-")
        base_url = await asyncio.to_thread(admin.start)
        try:
            ids = all_ids[:20]
            floor = []
            if any(h in TERMINAL for h in harnesses):  # the floor: our stdlib harness, same tasks, same admin
                rec, done = await one(base_url, backend, "ours", "oracle", ids, ctx)
                floor = [overhead_s(r) for r in done]
                records.append(rec)
            for harness in harnesses:
                oracle_ids = all_ids[: ctx.n(20, 60)] if harness == "mini-swe-agent" else ids
                rec, done = await one(base_url, backend, harness, "oracle", oracle_ids, ctx)
                records.append(rec)
                if harness in TERMINAL:
                    records.append(record(
                        "harness_rollout_overhead_ms", backend, [overhead_s(r) for r in done], attempts=len(oracle_ids),
                        floor_s=floor, env_id="pypi-bugs", harness=harness, policy="oracle", concurrency=CONCURRENCY,
                        phases_p50_ms=phases(done),
                        floor="the same for harness 'ours' (our standard-library agent) on the same tasks, same admin",
                        note="a rollout's time minus its policy's (the union of its model calls' spans) and its "
                             "verifier's (slot wait and run): agent sandbox, harness install and own work, diff"))
                    rec, _ = await one(base_url, backend, harness, "null", ids[: ctx.n(5, 20)], ctx)
                    records.append(rec)
        finally:
            await asyncio.to_thread(admin.stop)
    return records
