"""Pause, snapshots and fork through ROCK's door (an admin in its own process, driven by the SDK),
per backend, each against a floor measured in the same run, in alternating blocks:

- api_pause_resume_ms: ``pause()`` + ``resume()``; floor: two ``get_status()`` calls (the same two
  HTTP round trips, touching nothing)
- api_snapshot_ms: a filesystem snapshot of a sandbox that wrote 1 MB (then deleted); floor: one
  ``get_status()``
- api_fork_8_ready_ms: ``fork(8)`` until all 8 children answer ``echo``; floor: 8 sandboxes started
  at once (``start()`` x 8) until they answer (target: the fork <= 2x one sandbox start)
- api_full_fork_ready_ms (gvisor, where runsc runs): ``fork(4, mode="full")`` until all 4 answer;
  ``per_child_ms`` (p50) and ``per_child_p99_ms`` too
- restore_ms and api_restore_ms, from the same restores (per size of the change: a 1 or 32 MB file
  of the snapshot overwritten since): restore_ms is ``restore(snap)`` alone, until it returns (the
  same sandbox and SDK object: the echo after it goes on the client's connection); api_restore_ms goes on until
  the sandbox answers ``echo`` (a new bash session of the restored state). Floor of both: ``cp -a``
  of the same change on the host (a full snapshot's: a bare ``runsc restore`` of an idle python3,
  ``bench.snapshots.RunscRestoreFloor``), timed in the same alternating blocks. Beside api_restore_ms,
  ``start_from_snapshot_ms``, a new sandbox from the snapshot until it answers (a reset without
  restore). ``in_place_limit``: whether the change is within what a filesystem restore rewrites in
  place (past it the sandbox's new state starts from the snapshot, under the same id). On gvisor
  also with a full snapshot (memory and processes).

The runtime-level numbers (no admin) are bench/snapshots.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import Context, record
from bench.snapshots import RunscRestoreFloor
from rock.errors import Conflict
from rock.runtime import get_runtime_class, rollback
from rock.sdk.sandbox import Sandbox, SandboxConfig


def _config(url: str) -> SandboxConfig:
    return SandboxConfig(base_url=url, memory="512m", cpus=1, auto_clear_seconds=3600)


async def _timed(coro) -> float:
    t = time.perf_counter()
    await coro
    return time.perf_counter() - t


async def _ready(sandbox: Sandbox) -> None:
    assert (await sandbox.arun("echo hi")).output.strip() == "hi"


async def _drop(sandboxes: list[Sandbox]) -> None:
    await asyncio.gather(*(s.delete() for s in sandboxes), return_exceptions=True)
    await asyncio.gather(*(s.aclose() for s in sandboxes), return_exceptions=True)


async def _fork_ready(parent: Sandbox, n: int, mode: str) -> tuple[float, list[Sandbox]]:
    t = time.perf_counter()
    children = await parent.fork(n, mode=mode)
    await asyncio.gather(*(_ready(c) for c in children))
    return time.perf_counter() - t, children


async def _starts_ready(url: str, n: int) -> tuple[float, list[Sandbox]]:
    boxes = [Sandbox(_config(url)) for _ in range(n)]
    t = time.perf_counter()
    await asyncio.gather(*(b.start() for b in boxes))
    await asyncio.gather(*(_ready(b) for b in boxes))
    return time.perf_counter() - t, boxes


async def _drop_snapshots(parent: Sandbox) -> None:
    for snap in await parent.list_snapshots():  # what a fork kept (docker: its children's image)
        await parent.delete_snapshot(snap.name)


async def _backend(ctx: Context, backend: str) -> list[dict]:
    with AdminProcess(backend, prefix="rock-bench-snap-") as admin:
        url = admin.url
        records = []
        parent = Sandbox(_config(url))
        await parent.start()
        await parent.arun("head -c 1048576 /dev/urandom > /root/one-mb")
        blocks, per = ctx.n(3, 5), ctx.n(10, 30)
        pauses, floors = [], []
        for _ in range(blocks):
            for _ in range(per):
                pauses.append(await _timed(_pause_resume(parent)))
            for _ in range(per):
                floors.append(await _timed(_two_status(parent)))
        records.append(record("api_pause_resume_ms", backend, pauses, floor_s=floors,
                              floor="two get_status round trips"))
        snaps, floors = [], []
        for _ in range(blocks):
            for _ in range(ctx.n(2, 4)):
                t = time.perf_counter()
                snap = await parent.snapshot()
                snaps.append(time.perf_counter() - t)
                await parent.delete_snapshot(snap.name)
                floors.append(await _timed(parent.get_status()))
        records.append(record("api_snapshot_ms", backend, snaps, floor_s=floors, size_mb=1,
                              floor="one get_status round trip"))
        forks, floors, one = [], [], []
        for _ in range(ctx.n(2, 3)):
            took, children = await _fork_ready(parent, 8, "filesystem")
            forks.append(took)
            await _drop(children)
            await _drop_snapshots(parent)
            took, boxes = await _starts_ready(url, 8)
            floors.append(took)
            await _drop(boxes)
            took, boxes = await _starts_ready(url, 1)
            one.append(took)
            await _drop(boxes)
        rec = record("api_fork_8_ready_ms", backend, forks, floor_s=floors, floor="8 starts at once, until ready",
                     one_start_p50_ms=round(sorted(one)[len(one) // 2] * 1e3, 1))
        rec["ratio_to_one_start"] = round(rec["p50_ms"] / rec["one_start_p50_ms"], 2)
        records.append(rec)
        records += await _restores(ctx, backend, url, parent)
        if backend == "gvisor":
            full = []
            for _ in range(ctx.n(2, 3)):
                took, children = await _fork_ready(parent, 4, "full")
                full.append(took)
                await _drop(children)
                await _drop_snapshots(parent)
            rec = record("api_full_fork_ready_ms", backend, full, children=4)
            rec["per_child_ms"] = round(rec["p50_ms"] / 4, 1)
            rec["per_child_p99_ms"] = round(rec["p99_ms"] / 4, 1)  # the target: 250 ms a child at p99
            records.append(rec)
        await _drop([parent])
    return records


async def _copy_floor(mb: int) -> float:
    """``cp -a`` of a directory holding ``mb`` MB of fresh bytes, on the host's disk."""
    with tempfile.TemporaryDirectory(prefix="rock-bench-cp-") as tmp:
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        with open(os.path.join(src, "change"), "wb") as f:
            f.write(os.urandom(mb << 20))
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("cp", "-a", src, os.path.join(tmp, "dst"))
        await proc.wait()
        return time.perf_counter() - t


async def _restores(ctx: Context, backend: str, url: str, parent: Sandbox) -> list[dict]:
    records = []
    modes = ["filesystem", "full"] if backend == "gvisor" else ["filesystem"]
    async with contextlib.AsyncExitStack() as stack:
        restore_floor = None
        if backend == "gvisor":  # a memory restore's floor: a bare runsc restore (bench.snapshots)
            restore_floor = await stack.enter_async_context(
                RunscRestoreFloor(Path(tempfile.mkdtemp(prefix="rock-bench-restore-floor-"))))
        for mode in modes:
            records += await _restores_of(ctx, backend, url, parent, mode, restore_floor)
    return records


async def _restores_of(ctx: Context, backend: str, url: str, parent: Sandbox, mode: str,
                       restore_floor: RunscRestoreFloor | None) -> list[dict]:
    records = []
    floor_name, floors_per_block = "cp -a of the {mb} MB change", ctx.n(3, 5)
    if mode == "full":
        floor_name, floors_per_block = "a bare runsc restore of an idle python3", ctx.n(2, 3)

    async def floor_of(mb: int) -> float:
        if mode == "full":
            assert restore_floor is not None
            return await restore_floor.sample()
        return await _copy_floor(mb)

    # The change: a file the snapshot holds, overwritten since (the restore writes it back).
    await parent.arun("head -c 1M /dev/urandom > /root/kept-1; head -c 32M /dev/urandom > /root/kept-32")
    snap = await parent.snapshot(mode=mode)
    for mb in (1, 32):
        restores, calls, floors, fresh = [], [], [], []
        for _ in range(ctx.n(2, 4)):
            for _ in range(ctx.n(3, 5)):
                await parent.arun(f"head -c {mb << 20} /dev/urandom > /root/kept-{mb}")
                t = time.perf_counter()
                await parent.restore(snap.name)
                returned = time.perf_counter()
                await _ready(parent)
                restores.append(time.perf_counter() - t)
                calls.append(returned - t)
            for _ in range(floors_per_block):
                floors.append(await floor_of(mb))
            t = time.perf_counter()
            again = Sandbox(_config(url).model_copy(update={"snapshot": snap.name}))
            await again.start()
            await _ready(again)
            fresh.append(time.perf_counter() - t)
            await _drop([again])
        in_place = mode == "filesystem" and mb << 20 <= rollback.MAX_BYTES
        records.append(record("restore_ms", backend, calls, floor_s=floors, floor=floor_name.format(mb=mb),
                              size_mb=mb, mode=mode, measures="restore() until it returns", in_place_limit=in_place))
        rec = record("api_restore_ms", backend, restores, floor_s=floors, floor=floor_name.format(mb=mb),
                     size_mb=mb, mode=mode, measures="restore() until the sandbox answers echo in a new session",
                     in_place_limit=in_place)
        rec["start_from_snapshot_ms"] = round(sorted(fresh)[len(fresh) // 2] * 1e3, 1)
        records.append(rec)
    await _drop_snapshot(parent, snap.name)
    return records


async def _drop_snapshot(parent: Sandbox, name: str) -> None:
    """Delete ``name`` once no container uses it (docker: the restored sandbox's image)."""
    for _ in range(100):
        try:
            await parent.delete_snapshot(name)
            return
        except Conflict:
            await asyncio.sleep(0.2)


async def _pause_resume(sandbox: Sandbox) -> None:
    await sandbox.pause()
    await sandbox.resume()


async def _two_status(sandbox: Sandbox) -> None:
    await sandbox.get_status()
    await sandbox.get_status()


async def run(ctx: Context) -> list[dict]:
    records = []
    backends = list(ctx.backends)
    if "gvisor" not in backends and get_runtime_class("gvisor").available() is None:
        backends.append("gvisor")  # its numbers mean something only beside the others', in the same run
    for backend in backends:
        if backend == "local":
            continue  # no isolation, no snapshots worth timing here (runtime-level: bench/snapshots.py)
        ctx.progress(f"snapshots through the API on {backend}")
        records += await _backend(ctx, backend)
    return records
