"""Admission (rock.admin.sandboxes.admission): what the decision costs a start, and a create rate
held at its boundary.

admission_decision      one start's decision and its release (admit + release, a namespace with
                        quotas on sandboxes, memory, cpus and a create rate), timed per call in
                        alternating blocks against the same calls with admission off
                        (``admission: false``); ``overhead_us`` is the difference of the means.
admission_rate_boundary a namespace with ``creates_per_minute`` of 600 (10/s, burst 10) asked
                        as fast as the loop goes for a few seconds: ``admitted_per_s`` (the
                        quota's 10/s plus the burst spread over the window) and ``refused_429``.

Both measure the decision itself, in this process, on this machine's real capacity (a Worker's
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
        return records
    finally:
        shutil.rmtree(state, ignore_errors=True)
