"""Training tasks (seed 004) through a real admin: create / step / evaluate latencies, and the
tasks per second of an oracle rollout job at concurrency 32 against the same graders run
in-process (``ratio_to_baseline``), timed in alternating blocks in the same run.

Targets: BFCL step p50 <= 5 ms; job ratio_to_baseline >= 0.9 (issue 22).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from bench.admin import AdminProcess
from bench.chat import _cpu, _sandboxes
from bench.report import Context, record

SUITE = ("bfcl", {"categories": ["multi_turn_base"]}, "bfcl:multi_turn_base")
CALL = {"role": "assistant", "content": '<tool_call>{"name": "ls", "arguments": {}}</tool_call>'}
CONCURRENCY = 32


async def latencies(base_url: str, backend: str, n: int) -> list[dict]:
    from rock.sdk.training import AsyncTrainingSandbox
    from rock.training.policies import OraclePolicy

    env_type, params, env_id = SUITE
    out = []
    async with AsyncTrainingSandbox(base_url) as box:
        ids = (await box.get_env_profile(env_type, "all", params))[:n]
        await box.release_instance((await box.create_instance(env_type, ids[0]))["info"]["instance_id"])  # image, sandbox
        creates, steps, evals = [], [], []
        for tid in ids:
            t = time.perf_counter()
            iid = (await box.create_instance(env_type, tid))["info"]["instance_id"]
            creates.append(time.perf_counter() - t)
            for _ in range(3):
                t = time.perf_counter()
                await box.step(iid, CALL)
                steps.append(time.perf_counter() - t)
            await box.release_instance(iid)
        for tid in ids[: max(8, n // 4)]:  # evaluate a finished conversation: BFCL replays it all
            policy = OraclePolicy()
            await policy.start(env_type, tid, None, None)
            iid = (await box.create_instance(env_type, tid))["info"]["instance_id"]
            while policy.script:
                if (await box.step(iid, await policy.act([])))["is_terminated"]:
                    break
            t = time.perf_counter()
            await box.evaluate(iid)
            evals.append(time.perf_counter() - t)
            await box.release_instance(iid)
        he = (await box.get_env_profile("humaneval", "all"))[:4]
        # warm: the first instance exports the env image into this admin's fresh state dir (3-5 s,
        # once per image), which would otherwise be one of four creates and the whole p99
        await box.release_instance((await box.create_instance("humaneval", he[0]))["info"]["instance_id"])
        he_creates, he_evals = [], []
        for tid in he:
            t = time.perf_counter()
            iid = (await box.create_instance("humaneval", tid))["info"]["instance_id"]
            he_creates.append(time.perf_counter() - t)
            t = time.perf_counter()
            await box.evaluate(iid)
            he_evals.append(time.perf_counter() - t)
            await box.release_instance(iid)
    out.append(record("training_create", backend, creates, env_id=env_id))
    out.append(record("training_step", backend, steps, env_id=env_id, target_p50_ms=5.0))
    out.append(record("training_evaluate", backend, evals, env_id=env_id))
    out.append(record("training_create", backend, he_creates, env_id="humaneval", note="a sandbox per instance"))
    out.append(record("training_evaluate", backend, he_evals, env_id="humaneval"))
    return out


def in_process_job(task_ids: list[str]) -> float:
    """The same oracle over the same tasks with the graders in this process, doing what the
    runner does (BFCL's last step carries the grade, so no separate evaluate): tasks per second."""
    from rock.training.policies import OraclePolicy
    from rock.training.tasks.taskenv import TaskEnv

    env_type = SUITE[0]
    t0 = time.perf_counter()
    for tid in task_ids:
        env = TaskEnv(env_type, tid)
        env.reset()
        out = None
        for action in OraclePolicy().actions(env_type, tid):
            out, _, done, _, _ = env.step({"op": "step", "action": action})
            if done:
                break
        if "evaluation" not in (out or {}).get("info", {}):
            env.step({"op": "evaluate", "params": {"details": True}})
        env.close()
    return len(task_ids) / (time.perf_counter() - t0)


async def job_rate(base_url: str, task_limit: int) -> tuple[float, float]:
    from rock.training.policies import make_policy
    from rock.training.runner import run_job

    env_type, params, _ = SUITE
    summary = await run_job(base_url, env_type, "all", make_policy("oracle"), CONCURRENCY, task_limit, params)
    return summary["tasks_per_s"], summary["mean_reward"]


def _in_process_cpu(task_ids: list[str]) -> tuple[float, float]:
    """in_process_job's rate and the CPU seconds this thread spent on it."""
    t = time.thread_time()
    rate = in_process_job(task_ids)
    return rate, time.thread_time() - t


async def throughput(base_url: str, backend: str, ctx: Context, admin_pid: int | None) -> dict:
    from rock.sdk.training import AsyncTrainingSandbox

    env_type, params, env_id = SUITE
    limit = ctx.n(64, 200)
    async with AsyncTrainingSandbox(base_url) as box:
        ids = (await box.get_env_profile(env_type, "all", params))[:limit]
    # Warm, both over every task the blocks time: a task's first run loads its data and the
    # modules it calls (in this process for the baseline, in an env host for the job), and a
    # first block that pays that on one side only (the job was warmed over 32 of 64 tasks, the
    # baseline over 4) moved the ratio by 0.1-0.3. The job's warm run also starts the env
    # sandboxes a job this wide spreads over.
    in_process_job(ids)
    await job_rate(base_url, limit)
    served, local, rewards = [], [], []
    spent, base_cpu = dict.fromkeys(("admin", "trainer", "sandboxes"), 0.0), 0.0
    groups, agents = _sandboxes(admin_pid)  # the env sandboxes the warm run started (none on docker)
    # Alternating blocks, many: a block is under half a second, and on this VM the same block's
    # CPU per task moves by 20-40% from one to the next (steal), so a median of two was a coin toss.
    for _ in range(ctx.n(7, 9)):
        before = _cpu(admin_pid, groups, agents)
        rate, mean = await job_rate(base_url, limit)
        after = _cpu(admin_pid, groups, agents)
        for k in spent:
            spent[k] += after.get(k, 0.0) - before.get(k, 0.0)
        served.append(rate)
        rewards.append(mean)
        rate, cpu = await asyncio.to_thread(_in_process_cpu, ids)
        local.append(rate)
        base_cpu += cpu
    per_s, base = statistics.median(served), statistics.median(local)
    tasks = limit * len(served)
    cpu = {k: round(v / tasks * 1e3, 2) for k, v in spent.items()}
    base_ms = base_cpu / tasks * 1e3
    out = {"metric": "training_job_tasks_per_s", "backend": backend, "env_id": env_id, "n": limit,
           "concurrency": CONCURRENCY, "blocks": len(served), "per_s": round(per_s, 2), "baseline_per_s": round(base, 2),
           "ratio_to_baseline": round(per_s / base, 3), "mean_reward": min(rewards),
           "baseline": "the same oracle and BFCL graders in this process, one task at a time (graded once, "
                       "by the last step, as the runner does)", "target_ratio": 0.9,
           # CPU per task: the job by process (sandboxes: the owner group of the admin's descendant
           # sandboxes, so with bwrap the env hosts and agents, with docker none) against the baseline's.
           "cpu_ms_per_task": cpu, "baseline_cpu_ms_per_task": round(base_ms, 2)}
    if cpu["sandboxes"]:
        # The most the job's rate can be on this machine's cores with that much CPU per task
        # (every core busy with its processes), as a ratio to the baseline's one core.
        cores = os.cpu_count() or 1
        out["cpu_bound_ratio"] = round(cores * base_ms / sum(cpu.values()), 3)
    return out


async def run(ctx: Context) -> list[dict]:
    from rock.training import hostsite

    hostsite.import_from(hostsite.ensure_site())
    records = []
    for backend in ctx.backends:
        if backend == "local":
            continue  # training instances live in isolated sandboxes
        admin = AdminProcess(backend, prefix="rock-bench-training-")
        base_url = await asyncio.to_thread(admin.start)
        try:
            ctx.progress(f"training {backend}: create / step / evaluate latencies")
            records += await latencies(base_url, backend, ctx.n(24, 64))
            ctx.progress(f"training {backend}: oracle job at concurrency {CONCURRENCY} vs in-process")
            records.append(await throughput(base_url, backend, ctx, admin.pid()))
        finally:
            await asyncio.to_thread(admin.stop)
    return records
