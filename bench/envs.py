"""Env benchmark: GEM env steps through the service next to in-process gem, in the same run.

Metrics (JSON records):
- ``env_step_round_trip``: one env, sequential ``env.step`` with the sync ``rock.make`` client
  (what the seed sample does): p50/p95/p99, success rate; next to the admin's ``/health`` round
  trip on the same kind of connection (the HTTP floor) and the env's own in-process step time.
- ``env_steps_per_s``: 256 envs stepped together, ``per_s`` through the service
  (``make_vec``, one request per round) and ``baseline_per_s`` for in-process gem on the same
  env ids, seeds and actions (episodes that end are reset on both sides), ``ratio_to_baseline``.
  On both sides the first round after the reset is played untimed (``WARMUP``): what is timed
  is stepping, not the tail of the make and reset bursts before it.
- The floor, in the same records: ``floor_per_s`` over 256 ``bench:noop`` envs
  (``bench/noop_env.py``, whose step does nothing, registered as a user env in an image built
  from the default one), the most the service can carry; ``ceiling_ratio``, that floor over the
  game's in-process rate: the ratio the service would show if the game's own step cost nothing
  in its sandbox.

``async def run(ctx)`` (``bench.report.Context``) uses ``ctx.base_url`` when the caller already runs
an admin; otherwise, for each of ``ctx.backends``, it starts one (``rock admin start``) and stops it
and its env sandboxes afterwards. ``python -m bench --only envs`` runs it alone.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from urllib.parse import urlsplit

from bench.admin import AdminProcess
from bench.report import Context, record
from rock.sdk import sync_transport

NUM_ENVS = 256
# (env id, rounds of 256 steps): Sokoban is the seed's game (its step alone costs ~0.45 ms here).
THROUGHPUT = [("game:Sokoban-v0-easy", 8), ("game:Game2048-v0-easy", 20), ("game:GuessTheNumber-v0-easy", 40)]
LATENCY = ["game:GuessTheNumber-v0-easy", "game:Sokoban-v0-easy"]
MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]
NOOP_ID, NOOP_IMAGE = "bench:noop", "rock-bench-noop:latest"
WARMUP = 1  # rounds played untimed after the reset, on both sides
BLOCKS = 4  # the timed rounds alternate between the service and in-process in this many blocks


def _actions(env_id: str, rounds: int, n: int) -> list[list[str]]:
    rng = random.Random(0)
    choices = [f"\\boxed{{{k}}}" for k in range(1, 11)] if "GuessTheNumber" in env_id else MOVES
    return [[rng.choice(choices) for _ in range(n)] for _ in range(rounds)]


def _p50_ms(samples: list[float]) -> float:
    return round(sorted(samples)[len(samples) // 2] * 1e3, 4)


# -- latency -------------------------------------------------------------------------------------


def _health_floor(base_url: str, n: int) -> list[float]:
    """The admin's bare HTTP round trip on the connection kind rock.make uses (the lean sync one)."""
    url = urlsplit(base_url)
    conn = sync_transport.Connection(url.hostname, url.port, 60)
    times = []
    for _ in range(n + 50):
        t = time.perf_counter()
        conn.request("GET", "/health", b"", {})
        times.append(time.perf_counter() - t)
    conn.close()
    return times[50:]


def _in_process_step(env_id: str, actions: list[str]) -> float:
    import gem

    env = gem.make(env_id)
    env.reset(seed=0)
    times = []
    for a in actions:
        t = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(a)
        times.append(time.perf_counter() - t)
        if terminated or truncated:
            env.reset()
    return _p50_ms(times)


def latency(base_url: str, env_id: str, backend: str, n: int) -> dict:
    from rock.envs.client import Env

    actions = _actions(env_id, 1, n + 50)[0]
    floor = _health_floor(base_url, n)
    env = Env(env_id, base_url=base_url)
    times, attempts = [], 0
    try:
        env.reset(seed=0)
        for i, action in enumerate(actions):
            t = time.perf_counter()
            try:
                _, _, terminated, truncated, _ = env.step(action)
            except Exception:  # noqa: BLE001 - counted in the success rate
                terminated = truncated = False
                t = None
            if i >= 50:  # the first 50 warm the connection and the host
                attempts += 1
                if t is not None:
                    times.append(time.perf_counter() - t)
            if terminated or truncated:
                env.reset()  # not timed
    finally:
        env.close()
    return record("env_step_round_trip", backend, times, attempts=attempts,
                  floor_s=floor, env_id=env_id, client="sync rock.make", floor="admin GET /health, same client",
                  in_process_step_p50_ms=_in_process_step(env_id, actions))


# -- throughput ----------------------------------------------------------------------------------


class InProcess:
    """The baseline: the same envs in this process, one loop over all of them (what a trainer
    does without a service)."""

    def __init__(self, env_id: str):
        import gem

        self.envs = [gem.make(env_id) for _ in range(NUM_ENVS)]
        for i, env in enumerate(self.envs):
            env.reset(seed=i)

    def play(self, rows: list[list[str]]) -> int:
        steps = 0
        for row in rows:
            for env, action in zip(self.envs, row):
                _, _, terminated, truncated, _ = env.step(action)
                steps += 1
                if terminated or truncated:
                    env.reset()
        return steps


def _memory_mb(base_url: str, sandboxes: set[str]) -> float | None:
    """Memory the env sandboxes use (their cgroups), all 256 envs open."""
    import httpx

    total = 0
    for sid in sandboxes:
        reply = httpx.get(base_url + "/apis/envs/sandbox/v1/stats", params={"sandbox_id": sid}, timeout=60)
        used = reply.json().get("result", {}).get("memory_bytes") if reply.status_code == 200 else None
        if used is None:
            return None
        total += used
    return round(total / 2**20, 1)


async def _play(vec, rows: list[list[str]]) -> tuple[int, float]:
    """Steps taken and seconds spent stepping ``vec`` through ``rows``."""
    steps, t = 0, time.perf_counter()
    for row in rows:
        obs, *_ = await vec.step(row)
        steps += len(obs)
    return steps, time.perf_counter() - t


def _timed(play, rows: list[list[str]]) -> tuple[int, float]:
    t = time.perf_counter()
    steps = play(rows)
    return steps, time.perf_counter() - t


async def throughput(base_url: str, env_id: str, rounds: int, backend: str, floor) -> dict:
    """One round = one step of each of the 256 envs (one vector request through the service, one
    loop in-process). The timed rounds alternate in ``BLOCKS`` blocks between the service, the
    same envs in-process and ``floor`` (the noop vector, see ``noop_env.py``), so all three are
    timed at the same moments of this machine: on a shared VM its speed drifts by tens of
    percent within a minute."""
    from rock.envs.vec_client import AsyncVecEnv

    actions = _actions(env_id, WARMUP + rounds, NUM_ENVS)
    vec = await AsyncVecEnv.create(env_id, NUM_ENVS, base_url=base_url)
    try:
        await vec.reset(seed=0)  # env i gets seed i, as in-process
        local = InProcess(env_id)
        for row in actions[:WARMUP]:
            await vec.step(row)
            local.play([row])
        timed, size = actions[WARMUP:], -(-rounds // BLOCKS)
        done = {"service": [0, 0.0], "local": [0, 0.0], "floor": [0, 0.0]}
        for first in range(0, rounds, size):
            block = timed[first:first + size]
            for name, (steps, secs) in (("service", await _play(vec, block)), ("local", _timed(local.play, block)),
                                        ("floor", await _play(floor, block))):
                done[name][0] += steps
                done[name][1] += secs
        sandboxes = {h.split(":")[0] for h in vec.handles}
        memory = await asyncio.to_thread(_memory_mb, base_url, sandboxes)
    finally:
        await vec.close()
    per_s, base_per_s, floor_per_s = (steps / secs for steps, secs in done.values())
    return {"metric": "env_steps_per_s", "env_id": env_id, "backend": backend, "num_envs": NUM_ENVS,
            "env_sandboxes": len(sandboxes), "env_sandboxes_memory_mb": memory,
            "steps": done["service"][0], "per_s": round(per_s, 1),
            "baseline": "in-process, same envs/seeds/actions, timed in alternating blocks", "baseline_per_s": round(base_per_s, 1),
            "ratio_to_baseline": round(per_s / base_per_s, 3),
            "floor_per_s": round(floor_per_s, 1), "ceiling_ratio": round(floor_per_s / base_per_s, 3)}


# -- the floor -----------------------------------------------------------------------------------


def noop_image(base: str = "python:3.11") -> str:
    """``base`` plus bench/noop_env.py, built locally (docker's cache makes a rebuild instant)."""
    import shutil
    import tempfile
    from pathlib import Path

    import docker

    with tempfile.TemporaryDirectory(prefix="rock-bench-noop-") as context:
        shutil.copy(Path(__file__).with_name("noop_env.py"), Path(context, "noop_env.py"))
        Path(context, "Dockerfile").write_text(f"FROM {base}\nCOPY noop_env.py /opt/rock-bench/rock_bench_noop.py\n")
        client = docker.from_env()
        try:
            client.images.build(path=context, tag=NOOP_IMAGE, rm=True, pull=False)
        finally:
            client.close()
    return NOOP_IMAGE


def register_noop(base_url: str) -> None:
    import httpx

    spec = {"id": NOOP_ID, "entry_point": "rock_bench_noop:Noop", "image": noop_image(),
            "sys_path": ["/opt/rock-bench"], "description": "the env benchmark's floor: a step that does nothing"}
    reply = httpx.post(base_url + "/apis/v1/envs/gem/register", params={"replace": True}, json=spec, timeout=600)
    reply.raise_for_status()


# -- running -------------------------------------------------------------------------------------


async def _part(ctx: Context, base_url: str, backend: str) -> list[dict]:
    records = []
    for env_id in LATENCY:
        ctx.progress(f"envs {backend}: step round trip, {env_id}")
        records.append(await asyncio.to_thread(latency, base_url, env_id, backend, ctx.n(200, 1000)))
    from rock.envs.vec_client import AsyncVecEnv

    ctx.progress(f"envs {backend}: {NUM_ENVS} envs that do nothing ({NOOP_ID}), the throughput floor")
    await asyncio.to_thread(register_noop, base_url)
    floor = await AsyncVecEnv.create(NOOP_ID, NUM_ENVS, base_url=base_url)
    try:
        await floor.reset(seed=0)
        for env_id, rounds in THROUGHPUT:
            ctx.progress(f"envs {backend}: steps/s over {NUM_ENVS} envs, {env_id} (and in-process, and the floor)")
            records.append(await throughput(base_url, env_id, ctx.n(max(8, rounds // 4), rounds), backend, floor))
    finally:
        await floor.close()
    return records


async def run(ctx: Context) -> list[dict]:
    if ctx.base_url:
        return await _part(ctx, ctx.base_url, "given")
    records = []
    for backend in ctx.backends:
        if backend == "local":
            continue  # envs belong in isolated sandboxes; local adds nothing here
        own = AdminProcess(backend, prefix="rock-bench-envs-")
        base_url = await asyncio.to_thread(own.start)
        try:
            records += await _part(ctx, base_url, backend)
        finally:
            await asyncio.to_thread(own.stop)
    return records


def _table(records: list[dict]) -> None:
    for r in records:
        if r["metric"] == "env_step_round_trip":
            print(f"{r['metric']:<22} {r['backend']:<6} {r['env_id']:<28} p50 {r['p50_ms']:.3f} ms  p95 {r['p95_ms']:.3f}  "
                  f"p99 {r['p99_ms']:.3f}  ok {r['success_rate']:.0%}  floor(/health) p50 {r['floor_p50_ms']:.3f} ms  "
                  f"in-process step p50 {r['in_process_step_p50_ms']:.4f} ms")
        else:
            print(f"{r['metric']:<22} {r['backend']:<6} {r['env_id']:<28} {r['per_s']:>9.0f}/s  in-process {r['baseline_per_s']:>9.0f}/s  "
                  f"ratio {r['ratio_to_baseline']:.2f}  ceiling {r.get('ceiling_ratio', '-')}  "
                  f"({r['num_envs']} envs in {r['env_sandboxes']} sandboxes, "
                  f"{r['env_sandboxes_memory_mb']} MB)")


if __name__ == "__main__":
    import argparse
    import logging

    logging.disable(logging.INFO)  # gem logs every make at INFO
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="docker,bwrap")
    parser.add_argument("--base-url", help="use this running admin instead of starting one")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the records to this file")
    opts = parser.parse_args()
    ctx = Context(backends=opts.backends.split(","), quick=opts.quick, base_url=opts.base_url)
    out = asyncio.run(run(ctx))
    _table(out)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(out, f, indent=2)
