"""Admission (rock.admin.sandboxes.admission): what the decision costs a start, and a create rate
held at its boundary.

admission_decision      one start's decision and its release (admit + release, a namespace with
                        quotas on sandboxes, memory, cpus and a create rate), timed per call in
                        alternating blocks against the same calls with admission off
                        (``admission: false``); ``overhead_us`` is the difference of the means.
admission_rate_boundary a namespace with ``creates_per_minute`` of 600 (10/s, burst 10) asked
                        as fast as the loop goes for a few seconds: ``admitted_per_s`` (the
                        quota's 10/s plus the burst spread over the window) and ``refused_429``.
stop_many_at_once       bwrap: N running sandboxes (50 with --quick, 500 in full) stopped at
                        once (frozen, killed, removed; files kept, as ROCK's stop): ``wall_s``
                        until the last stop returned, per-stop latencies in the percentiles.

The first two measure the decision itself, in this process, on this machine's real capacity (a Worker's
``capacity()``); a start's own cost (tens of ms on bwrap, bench.sdk) dwarfs it.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time

from bench.report import record
from rock.admin.sandboxes.admission import Admission
from rock.config import Settings
from rock.errors import QuotaExceeded
from rock.worker.worker import Worker

QUOTA = {"sandboxes": 1000, "memory": "1000g", "cpus": 1000, "creates_per_minute": 6e6, "create_burst": 100000}


def _ledger(state: str, on: bool, quota: dict) -> Admission:
    settings = Settings(state_dir=state, backend="local", admission=on, quotas={"bench": quota},
                        node_cpus=1e6, node_memory="1000000g")
    return Admission(settings, Worker(settings, "local"))


def _block(ledger: Admission, n: int, offset: int) -> list[float]:
    out = []
    cost = ledger.cost(0.5, 256 << 20)
    for i in range(n):
        sid = f"s{offset + i}"
        t0 = time.perf_counter()
        ledger.admit("bench", [(sid, *cost)])
        ledger.release(sid)
        out.append(time.perf_counter() - t0)
    return out


async def _stop_many(ctx, state: str) -> dict | None:
    from rock.runtime import get_runtime_class

    if "bwrap" not in ctx.backends or get_runtime_class("bwrap").available():
        return None
    n = ctx.n(50, 500)
    worker = Worker(Settings(state_dir=state, backend="bwrap"), "bwrap")
    await worker.start()
    ids: list[str] = []
    try:
        for first in range(0, n, 25):  # started in batches: the start is not what is measured
            specs = [worker.default_spec(f"stop{first + i}").model_copy(update={"memory_bytes": 64 << 20,
                                                                                "cpus": 0.1})
                     for i in range(min(25, n - first))]
            results = await asyncio.gather(*(worker.create(spec) for spec in specs), return_exceptions=True)
            ids += [r.sandbox_id for r in results if not isinstance(r, BaseException)]
        ctx.progress(f"stop_many: {len(ids)} sandboxes running; stopping them at once")

        async def timed(sid: str) -> float | None:
            t0 = time.perf_counter()
            try:
                await worker.stop(sid, keep=True)
                return time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - a failed stop is counted, not raised
                return None

        t0 = time.perf_counter()
        took = await asyncio.gather(*(timed(sid) for sid in ids))
        wall = time.perf_counter() - t0
        done = [t for t in took if t is not None]
        return record("stop_many_at_once", "bwrap", done, attempts=len(ids), wall_s=round(wall, 3), asked=n)
    finally:
        await asyncio.gather(*(worker.stop(sid) for sid in ids), return_exceptions=True)
        await worker.close(stop_sandboxes=True)


async def run(ctx) -> list[dict]:
    state = tempfile.mkdtemp(prefix="rock-bench-admission-")
    try:
        on, off = _ledger(state, True, QUOTA), _ledger(state, False, QUOTA)
        n, blocks = ctx.n(2000, 20000), ctx.n(6, 10)
        times = {"on": [], "off": []}
        for b in range(blocks):  # alternating blocks: drift in the machine's load falls on both
            for name, ledger in (("on", on), ("off", off)) if b % 2 == 0 else (("off", off), ("on", on)):
                times[name] += _block(ledger, n, b * n)
        overhead_us = (statistics.fmean(times["on"]) - statistics.fmean(times["off"])) * 1e6
        records = [record("admission_decision", "any", times["on"], floor_s=times["off"],
                          overhead_us=round(overhead_us, 3), per_block=n, blocks=blocks)]

        rated = _ledger(state, True, {"creates_per_minute": 600, "create_burst": 10})
        window = ctx.n(3, 10)
        admitted = refused = 0
        took: list[float] = []
        end = time.perf_counter() + window
        i = 0
        while time.perf_counter() < end:
            i += 1
            t0 = time.perf_counter()
            try:
                rated.admit("bench", [(f"r{i}", 0.001, 1)])
                admitted += 1
                rated.release(f"r{i}")
            except QuotaExceeded:
                refused += 1
            took.append(time.perf_counter() - t0)
            if i % 1000 == 0:
                await asyncio.sleep(0.001)
        records.append(record("admission_rate_boundary", "any", took, admitted=admitted, refused_429=refused,
                              window_s=window, admitted_per_s=round(admitted / window, 2), quota_per_s=10.0,
                              burst=10))
        stopped = await _stop_many(ctx, state)
        if stopped is not None:
            records.append(stopped)
        return records
    finally:
        shutil.rmtree(state, ignore_errors=True)
