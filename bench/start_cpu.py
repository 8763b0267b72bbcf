"""Where the CPU of one bwrap sandbox start goes, next to a bare ``bwrap`` start (bwrap only).

- start_cpu_split: sequential start -> first output -> stop, in blocks alternating with blocks of
  the bare-bwrap floor; per start, CPU milliseconds of
  ``worker`` (the worker's own process, all its threads: records, admission, cgroup creation
  and removal, the zygote's requests, the agent client), ``zygote`` (the agent zygote itself:
  its forks, each sandbox's mount namespace and root mount, its requests), ``sandbox``
  (everything in the sandbox's cgroup, read just before its stop: bwrap, the stub, the
  agent, its bash sessions, the command)
  and ``machine`` (the whole machine: the kernel's own work for the sandbox, such as freeing
  its namespaces, and anything else that ran meanwhile). ``p50_ms`` is the machine CPU per start.
  Each part reports the median over blocks and its spread (min, max), so a loaded machine shows.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import uuid

from bench.report import Context, machine_cpu_s, process_cpu_s, record
from bench.runtime import BWRAP_FLOOR, IMAGE, first_output
from rock.config import Settings
from rock.runtime import cgroups
from rock.worker.worker import Worker

LOOP = "uvloop"
BLOCKS = 3


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    """CPU seconds ``pid``'s main thread has run, in nanoseconds' resolution where the kernel
    keeps scheduler statistics (clock ticks are 10 ms, a start's zygote share is 1-2 ms)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return process_cpu_s(pid)


def _floor_block(n: int) -> dict[str, float]:
    """CPU per bare bwrap start: its own processes (reaped children) and the machine's."""
    m0, c0 = machine_cpu_s(), _children_cpu_s()
    for _ in range(n):
        subprocess.run(BWRAP_FLOOR, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"bwrap": (_children_cpu_s() - c0) / n * 1e3, "machine": (machine_cpu_s() - m0) / n * 1e3}


async def _rock_block(worker: Worker, n: int) -> dict[str, float]:
    zygote = worker.runtime.zygote
    zygote_pid = zygote._proc.pid if zygote is not None and zygote._proc is not None else None
    sandbox = 0.0
    m0, w0 = machine_cpu_s(), _own_cpu_s()
    z0 = _process_cpu_s(zygote_pid) if zygote_pid else 0.0
    for _ in range(n):
        sid = f"b{uuid.uuid4().hex[:10]}"
        try:
            await first_output(worker, sid)
            used = cgroups.Cgroup(worker.get(sid).runtime_id).stats()["cpu_seconds"]
            sandbox += used or 0.0
        finally:
            if sid in {s.sandbox_id for s in worker.list()}:
                await worker.stop(sid)
    await worker.runtime._drain()  # the teardown thread's share of this block's starts
    z1 = _process_cpu_s(zygote_pid) if zygote_pid else 0.0
    return {"worker": (_own_cpu_s() - w0) / n * 1e3, "zygote": (z1 - z0) / n * 1e3, "sandbox": sandbox / n * 1e3,
            "machine": (machine_cpu_s() - m0) / n * 1e3}


def _spread(blocks: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [b[key] for b in blocks]
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


async def run(ctx: Context) -> list[dict]:
    if "bwrap" not in ctx.backends:
        return []
    n = ctx.n(10, 30)
    state = tempfile.mkdtemp(prefix="rsc-", dir="/tmp")
    worker = Worker(Settings(state_dir=state, backend="bwrap", default_memory="512m", default_cpus=1.0), "bwrap")
    await worker.start()
    rock: list[dict[str, float]] = []
    floor: list[dict[str, float]] = []
    try:
        ctx.progress(f"bwrap: first start (prepares {IMAGE})")
        for _ in range(3):  # untimed: the image's root, the zygote, the first imports
            sid = f"b{uuid.uuid4().hex[:10]}"
            await first_output(worker, sid)
            await worker.stop(sid)
        for block in range(BLOCKS):
            ctx.progress(f"bwrap: start CPU, block {block + 1}/{BLOCKS}: {n} bare bwrap, then {n} sandboxes")
            floor.append(await asyncio.to_thread(_floor_block, n))
            rock.append(await _rock_block(worker, n))
    finally:
        await worker.close(stop_sandboxes=True)
        shutil.rmtree(state, ignore_errors=True)
    parts = {key: _spread(rock, key) for key in ("worker", "zygote", "sandbox", "machine")}
    return [record("start_cpu_split", "bwrap", [b["machine"] / 1e3 for b in rock], BLOCKS,
                   [b["machine"] / 1e3 for b in floor], blocks=BLOCKS, starts_per_block=n, cpu_ms_per_start=parts,
                   floor_cpu_ms_per_start={key: _spread(floor, key) for key in ("bwrap", "machine")},
                   cpus=os.cpu_count())]
