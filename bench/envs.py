"""Env benchmark: GEM env steps through the service next to in-process gem, in the same run.

Metrics (JSON records):
- ``env_step_round_trip``: one env, sequential ``env.step`` with the sync ``rock.make`` client
  (what the seed sample does): p50/p95/p99, success rate; next to the admin's ``/health`` round
  trip on the same kind of connection (the HTTP floor) and the env's own in-process step time.
- ``env_steps_per_s``: 256 envs stepped together, ``per_s`` through the service
  (``make_vec``, one request per round) and ``baseline_per_s`` for in-process gem on the same
  env ids, seeds and actions (episodes that end are reset on both sides), ``ratio_to_baseline``.

``async def run(ctx)`` uses ``ctx.base_url`` when the caller already runs an admin; otherwise it
starts one (``rock admin start``, backend ``ctx.backend`` or auto) and stops it and its env
sandboxes afterwards. ``python -m bench.envs [--backend B] [--json FILE]`` runs it alone.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

NUM_ENVS = 256
LATENCY_STEPS = 1000
# (env id, rounds of 256 steps): Sokoban is the seed's game (its step alone costs ~0.45 ms here).
THROUGHPUT = [("game:Sokoban-v0-easy", 8), ("game:Game2048-v0-easy", 20), ("game:GuessTheNumber-v0-easy", 40)]
LATENCY = ["game:GuessTheNumber-v0-easy", "game:Sokoban-v0-easy"]
MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]


def _actions(env_id: str, rounds: int, n: int) -> list[list[str]]:
    rng = random.Random(0)
    choices = [f"\\boxed{{{k}}}" for k in range(1, 11)] if "GuessTheNumber" in env_id else MOVES
    return [[rng.choice(choices) for _ in range(n)] for _ in range(rounds)]


def _pcts(samples: list[float]) -> dict:
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1e3  # noqa: E731
    return {"p50_ms": round(pick(0.50), 4), "p95_ms": round(pick(0.95), 4), "p99_ms": round(pick(0.99), 4),
            "mean_ms": round(sum(s) / len(s) * 1e3, 4)}


# -- latency -------------------------------------------------------------------------------------


def _health_floor(base_url: str, n: int = 500) -> dict:
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    times = []
    for _ in range(n + 50):
        t = time.perf_counter()
        conn.request("GET", "/health")
        conn.getresponse().read()
        times.append(time.perf_counter() - t)
    conn.close()
    return _pcts(times[50:])


def _in_process_step(env_id: str, actions: list[str]) -> dict:
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
    return _pcts(times)


def latency(base_url: str, env_id: str, backend: str) -> dict:
    from rock.envs.client import Env

    actions = _actions(env_id, 1, LATENCY_STEPS + 50)[0]
    floor = _health_floor(base_url)
    env = Env(env_id, base_url=base_url)
    times, ok = [], 0
    try:
        env.reset(seed=0)
        for i, action in enumerate(actions):
            t = time.perf_counter()
            try:
                _, _, terminated, truncated, _ = env.step(action)
                ok += 1
            except Exception:  # noqa: BLE001 - counted in the success rate
                terminated = truncated = False
            if i >= 50:
                times.append(time.perf_counter() - t)
            if terminated or truncated:
                env.reset()  # not timed
    finally:
        env.close()
    record = {"metric": "env_step_round_trip", "env_id": env_id, "backend": backend, "client": "sync rock.make",
              "n": len(times), "success_rate": round(ok / len(actions), 4), **_pcts(times),
              "floor": "admin GET /health, same client", "floor_p50_ms": floor["p50_ms"],
              "in_process_step_p50_ms": _in_process_step(env_id, actions)["p50_ms"]}
    record["ratio_to_floor"] = round(record["p50_ms"] / floor["p50_ms"], 3)
    return record


# -- throughput ----------------------------------------------------------------------------------


def baseline(env_id: str, actions: list[list[str]]) -> tuple[float, int]:
    """In-process gem, one loop over 256 envs (what a trainer does without a service)."""
    import gem

    envs = [gem.make(env_id) for _ in range(NUM_ENVS)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    steps = 0
    t = time.perf_counter()
    for row in actions:
        for env, action in zip(envs, row):
            _, _, terminated, truncated, _ = env.step(action)
            steps += 1
            if terminated or truncated:
                env.reset()
    return steps / (time.perf_counter() - t), steps


async def service_throughput(base_url: str, env_id: str, actions: list[list[str]]) -> tuple[float, int, int]:
    from rock.envs.vec_client import AsyncVecEnv

    vec = await AsyncVecEnv.create(env_id, NUM_ENVS, base_url=base_url)
    try:
        await vec.reset(seed=0)  # env i gets seed i, as in the baseline
        sandboxes = len({h.split(":")[0] for h in vec.handles})
        steps = 0
        t = time.perf_counter()
        for row in actions:
            obs, *_ = await vec.step(row)
            steps += len(obs)
        return steps / (time.perf_counter() - t), steps, sandboxes
    finally:
        await vec.close()


async def throughput(base_url: str, env_id: str, rounds: int, backend: str) -> dict:
    actions = _actions(env_id, rounds, NUM_ENVS)
    per_s, steps, sandboxes = await service_throughput(base_url, env_id, actions)
    base_per_s, _ = await asyncio.to_thread(baseline, env_id, actions)
    return {"metric": "env_steps_per_s", "env_id": env_id, "backend": backend, "num_envs": NUM_ENVS,
            "env_sandboxes": sandboxes, "steps": steps, "per_s": round(per_s, 1),
            "baseline": "in-process gem, same envs/seeds/actions, same run", "baseline_per_s": round(base_per_s, 1),
            "ratio_to_baseline": round(per_s / base_per_s, 3)}


# -- running -------------------------------------------------------------------------------------


class _OwnAdmin:
    """An admin of our own when the caller has none (stopped, with its env sandboxes, at the end)."""

    def __init__(self, backend: str):
        self.backend = backend
        self.state = tempfile.mkdtemp(prefix="rock-bench-envs-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _rock(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "rock.cli.main", *args, "--state-dir", self.state], check=True,
                       capture_output=True, timeout=300)

    def start(self) -> str:
        self._rock("admin", "start", "--backend", self.backend, "--port", str(self.port))
        return self.url

    def stop(self) -> None:
        import httpx

        hosted = httpx.get(self.url + "/apis/v1/envs/gem/hosted", timeout=60).json()
        for sandbox_id in hosted:
            httpx.post(self.url + "/apis/envs/sandbox/v1/stop", json={"sandbox_id": sandbox_id}, timeout=120)
        self._rock("admin", "stop")


async def run(ctx) -> list[dict]:
    base_url = getattr(ctx, "base_url", None)
    backend = getattr(ctx, "backend", None) or "auto"
    own = None
    if base_url is None:
        own = _OwnAdmin(backend)
        base_url = await asyncio.to_thread(own.start)
    try:
        records = []
        for env_id in LATENCY:
            records.append(await asyncio.to_thread(latency, base_url, env_id, backend))
        for env_id, rounds in THROUGHPUT:
            records.append(await throughput(base_url, env_id, rounds, backend))
        return records
    finally:
        if own is not None:
            await asyncio.to_thread(own.stop)


def _table(records: list[dict]) -> None:
    for r in records:
        if r["metric"] == "env_step_round_trip":
            print(f"{r['metric']:<22} {r['env_id']:<30} p50 {r['p50_ms']:.3f} ms  p95 {r['p95_ms']:.3f}  "
                  f"p99 {r['p99_ms']:.3f}  ok {r['success_rate']:.0%}  floor(/health) p50 {r['floor_p50_ms']:.3f} ms  "
                  f"in-process step p50 {r['in_process_step_p50_ms']:.4f} ms")
        else:
            print(f"{r['metric']:<22} {r['env_id']:<30} {r['per_s']:>9.0f}/s  in-process {r['baseline_per_s']:>9.0f}/s  "
                  f"ratio {r['ratio_to_baseline']:.2f}  ({r['num_envs']} envs in {r['env_sandboxes']} sandboxes)")


if __name__ == "__main__":
    import argparse
    import logging

    logging.disable(logging.INFO)  # gem logs every make at INFO
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("ROCK_BACKEND", "auto"))
    parser.add_argument("--base-url", help="use this running admin instead of starting one")
    parser.add_argument("--json", help="write the records to this file")
    opts = parser.parse_args()
    ctx = argparse.Namespace(base_url=opts.base_url, backend=opts.backend)
    out = asyncio.run(run(ctx))
    _table(out)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(out, f, indent=2)
