"""Gymnasium benchmark (seed 003's sandbox envs) next to gymnasium in-process, in the same run.

Metrics (JSON records, with ``env_id``):
- ``gym_step_round_trip``: one CartPole-v1 ``rock.numpy.SandboxEnv``, sequential steps:
  p50/p95/p99; next to the admin's ``/health`` round trip on the same kind of connection (the
  HTTP floor) and an in-process CartPole step (``in_process_step_p50_ms``). Target p50 <= 0.5 ms.
- ``gym_vec_steps_per_s``: CartPole-v1 x 64 and HalfCheetah-v5 x 16 as ``SandboxVectorEnv``:
  ``per_s`` in its default mode, "sync" (``per_s_async`` for "async"), next to gymnasium's
  own ``SyncVectorEnv`` (``sync_per_s``) and ``AsyncVectorEnv`` (``async_per_s``) in this process,
  on the same envs and actions; ``ratio_to_async`` = per_s / async_per_s (target >= 1), and
  envpool's rate where envpool installs (``envpool_per_s``). All four are timed in alternating
  blocks, so they see the same moments of the machine.

The in-process references need gymnasium's families in this interpreter (the test extras).
"""

from __future__ import annotations

import time

import numpy as np

from bench.admin import AdminProcess
from bench.envs import _health_floor
from bench.report import Context, record

VECTOR = [("CartPole-v1", 64), ("HalfCheetah-v5", 16)]
BLOCKS = 4


def _quiet() -> None:
    import warnings

    warnings.filterwarnings("ignore")


def latency(base_url: str, backend: str, n: int) -> dict:
    import gymnasium as gym

    import rock.numpy

    ref = gym.make("CartPole-v1")
    ref.reset(seed=0)
    local = []
    for i in range(n):
        t = time.perf_counter()
        _, _, term, trunc, _ = ref.step(i % 2)
        local.append(time.perf_counter() - t)
        if term or trunc:
            ref.reset()
    times, floor = [], []
    with rock.numpy.SandboxEnv("CartPole-v1", base_url=base_url, progress=None) as env:
        env.reset(seed=0)
        for i in range(50):  # warm the connection and the host
            env.step(i % 2)
        env.reset(seed=1)
        # The floor (/health on the same kind of connection) in alternating blocks with the steps:
        # this VM's speed drifts within a minute.
        for block in range(BLOCKS * 2):
            floor += _health_floor(base_url, n // (BLOCKS * 2))
            for i in range(n // (BLOCKS * 2)):
                t = time.perf_counter()
                _, _, term, trunc, _ = env.step(i % 2)
                times.append(time.perf_counter() - t)
                if term or trunc:
                    env.reset()
    return record("gym_step_round_trip", backend, times, floor_s=floor, env_id="CartPole-v1",
                  client="sync rock.numpy.SandboxEnv", floor="admin GET /health, same client",
                  in_process_step_p50_ms=round(sorted(local)[len(local) // 2] * 1e3, 4))


def _envpool(env_id: str, n: int):
    try:
        import envpool
    except ImportError:
        return None
    try:
        return envpool.make_gymnasium(env_id, num_envs=n)
    except Exception:  # noqa: BLE001 - an id envpool does not have: no envpool rate
        return None


def _timed(env, actions: list, rounds: int, reset_first: bool = False) -> float:
    """Seconds for ``rounds`` vector steps."""
    t = time.perf_counter()
    for k in range(rounds):
        env.step(actions[k % len(actions)])
    return time.perf_counter() - t


def throughput(base_url: str, backend: str, env_id: str, n: int, rounds: int) -> dict:
    import gymnasium as gym

    import rock.numpy

    space = gym.make(env_id).action_space
    space.seed(0)
    actions = [np.stack([space.sample() for _ in range(n)]) for _ in range(32)]
    subjects = {
        "per_s": rock.numpy.SandboxVectorEnv(env_id, n, vectorization_mode="sync", base_url=base_url, progress=None),
        "per_s_async": rock.numpy.SandboxVectorEnv(env_id, n, vectorization_mode="async", base_url=base_url,
                                                   progress=None),
        "sync_per_s": gym.make_vec(env_id, num_envs=n, vectorization_mode="sync"),
        "async_per_s": gym.make_vec(env_id, num_envs=n, vectorization_mode="async"),
    }
    pool = _envpool(env_id, n)
    if pool is not None:
        subjects["envpool_per_s"] = pool
    spent = {k: 0.0 for k in subjects}
    try:
        for env in subjects.values():
            env.reset(seed=0)
            _timed(env, actions, 5)  # warm: not timed
        per_block = max(1, rounds // BLOCKS)
        for _ in range(BLOCKS):
            for name, env in subjects.items():
                spent[name] += _timed(env, actions, per_block)
    finally:
        for env in subjects.values():
            env.close()
    steps = per_block * BLOCKS * n
    rates = {k: round(steps / v, 1) for k, v in spent.items()}
    # A rate, not latencies: no percentiles (record() of no samples said n 0, success_rate 0.0).
    out = {"metric": "gym_vec_steps_per_s", "backend": backend, "env_id": env_id, "num_envs": n,
           "steps_each": steps, **rates, "ratio_to_async": round(rates["per_s"] / rates["async_per_s"], 3),
           "ratio_to_sync": round(rates["per_s"] / rates["sync_per_s"], 3)}
    if "envpool_per_s" not in rates:
        out["envpool"] = "not installed here" if pool is None else "no such id"
    return out


async def run(ctx: Context) -> list[dict]:
    import asyncio

    _quiet()
    out = []
    for backend in [b for b in ctx.backends if b != "local"]:
        admin = AdminProcess(backend)
        url = ctx.base_url or admin.start()
        try:
            ctx.progress(f"gym {backend}: building or finding the gym env image, then the step round trip")
            out.append(await asyncio.to_thread(latency, url, backend, ctx.n(300, 2000)))
            for env_id, n in VECTOR:
                ctx.progress(f"gym {backend}: {env_id} x {n} through the service and in-process")
                out.append(await asyncio.to_thread(throughput, url, backend, env_id, n, ctx.n(40, 200)))
        finally:
            if ctx.base_url is None:
                admin.stop()
    return out
