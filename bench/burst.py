"""The burst benchmark: 100 ``Sandbox.start()`` at once through the SDK, per backend.

sdk_burst_100   each start's time until ready; success_rate counts failures; wall_s the whole burst

Its own part, run last: 100 sandboxes are torn down for seconds after it, which would show in
any latency measured next.
"""

from __future__ import annotations

import asyncio
import time

from bench.admin import AdminProcess
from bench.report import record
from bench.sdk import _start_to_first_output, _timed_start, usable


async def _burst(ctx, backend: str) -> dict:
    admin = AdminProcess(backend, prefix="rock-bench-burst-")
    url = admin.start()
    try:
        await _start_to_first_output(url)  # warm-up: unpack the image, compile, caches
        ctx.progress(f"sdk {backend}: burst of 100 start()")
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_timed_start(url) for _ in range(100)))
        wall = time.perf_counter() - t0
        ok = [r for r in results if r is not None]
        return record("sdk_burst_100", backend, ok, attempts=100, wall_s=round(wall, 3))
    finally:
        admin.stop()


async def run(ctx) -> list[dict]:
    records = []
    for backend in usable(ctx):
        records.append(await _burst(ctx, backend))
    return records
