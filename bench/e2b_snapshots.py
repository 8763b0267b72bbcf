"""Pause, snapshots and fork through the e2b door: the newest e2b SDK (its own venv, the client of
bench/e2b.py) against an admin process per backend, each against a floor measured by the same
client in the same run, in alternating blocks:

e2b_pause_resume_ms   pause() + connect(); floor: two get_info() (the same two round trips)
e2b_snapshot_ms       create_snapshot(mode="filesystem") of a fresh sandbox; floor: one get_info()
e2b_fork_8_ready_ms   fork(count=8) until all 8 children answer commands.run; floor: 8 Sandbox.create
                      at once until they answer (the issue's target: the fork <= 2x the floor). On
                      gvisor the fork is a full one (memory and processes, as E2B's are); elsewhere
                      a filesystem one. gvisor runs where runsc does, beside the backends asked for.

ROCK's own door's numbers are bench/snapshots_api.py's; the runtime's, bench/snapshots.py's.
"""

from __future__ import annotations

from bench.admin import AdminProcess
from bench.e2b import _Client, each_backend
from bench.report import record
from bench.sdk import isolated
from rock.runtime import get_runtime_class


async def _alternate(client: _Client, verb: str, floor: str, n: int, block: int) -> tuple[list, list]:
    samples, floors = [], []
    while len(samples) < n:
        samples += client.ask(verb, block)
        floors += client.ask(floor, block)
    return samples, floors


async def _backend(ctx, backend: str, python) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-e2b-snap-")
    url = admin.start()
    client = _Client(python, url)
    records = []
    try:
        client.ask("rt", 1)  # warm-up: imports, connections, the image, the held sandbox
        ctx.progress(f"e2b {backend}: pause + connect (floor: two get_info)")
        got, floor = await _alternate(client, "pause", "info2", ctx.n(20, 100), 5)
        records.append(record("e2b_pause_resume_ms", backend, got, floor_s=floor))
        ctx.progress(f"e2b {backend}: create_snapshot filesystem (floor: one get_info)")
        got, floor = await _alternate(client, "snap", "info1", ctx.n(10, 40), 5)
        records.append(record("e2b_snapshot_ms", backend, got, floor_s=floor))
        ctx.progress(f"e2b {backend}: fork(8) ready (floor: 8 creates at once)")
        got, floor = await _alternate(client, "fork8", "create8", ctx.n(3, 10), 1)
        records.append(record("e2b_fork_8_ready_ms", backend, got, floor_s=floor, target_x_floor=2))
    finally:
        client.close()
        admin.stop()
    return records


async def run(ctx) -> list[dict]:
    backends = isolated(ctx)
    if get_runtime_class("gvisor").available() is None and ("gvisor" in ctx.backends or backends):
        backends.append("gvisor")  # where the fork is a full one (E2B's kind): beside the others, in one run
    return await each_backend(ctx, "e2b_snapshots", _backend, backends)
