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
  ``sandbox_cpu_ms_per_start`` splits ``sandbox`` by process, read from each live process of the
  cgroup (all its threads) just before the stop: ``bwrap`` (bwrap and the sandbox's init, which
  is bwrap too), ``agent`` (the agent, forked from the zygote), ``bash`` (the session's shell),
  ``stub`` (the ``sh`` bwrap runs, holding the sandbox open) and ``gone`` (what the cgroup counted
  for processes no longer there). Their exits come after the read: a sandbox's exit frees its
  mount namespace with the overlay root and its pid and network namespaces, which the kernel
  does in the exiting processes and a kworker, and ``machine`` holds it.
  The floor, ``floor_cpu_ms_per_start``: ``bwrap``, everything a bare bwrap start runs from
  start to exit (its processes' CPU, counted by a cgroup of the floor's own), and ``machine``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
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


# sandbox_cpu_ms_per_start's parts, and a sandbox process's part by its command name.
SANDBOX_PARTS = ("bwrap", "agent", "bash", "stub", "gone")
_PARTS = {"bwrap": "bwrap", "bash": "bash", "sh": "stub"}


def _sandbox_parts(group: cgroups.Cgroup, total_s: float) -> dict[str, float]:
    """The sandbox's CPU seconds by process (see the module's docstring), summing to ``total_s``."""
    parts = dict.fromkeys(SANDBOX_PARTS, 0.0)
    for pid in group.pids():
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        part = "agent" if comm.startswith("python") else _PARTS.get(comm, "gone")
        parts[part] += process_cpu_s(pid)
    parts["gone"] = max(0.0, total_s - sum(v for k, v in parts.items() if k != "gone"))
    return parts


# Runs the floor's bwraps from inside a cgroup of its own, so the cgroup counts every process of
# theirs; prints its own CPU seconds over the loop, which the floor takes off the group's.
FLOOR_HELPER = r"""
import json, os, resource, subprocess, sys
procs, argv, n = json.loads(sys.argv[1])
for path in procs:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
print("in", flush=True)
sys.stdin.readline()
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
c0 = cpu()
for _ in range(n):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps(cpu() - c0), flush=True)
"""


def _floor_block(n: int) -> dict[str, float]:
    """CPU per bare bwrap start: its own processes (all of them, from a cgroup: its reaped children's
    rusage misses bwrap's sandbox init, which the outer bwrap does not reap, about half of it
    here) and the machine's."""
    group = cgroups.Cgroup(f"rock-bench/floor-{uuid.uuid4().hex[:10]}")
    group.create(None, None, None)
    try:
        procs = [str(d / "cgroup.procs") for d in group.unique_dirs()]
        helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", FLOOR_HELPER, json.dumps([procs, BWRAP_FLOOR, n])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if helper.stdout.readline().strip() != "in":  # it could not join the group: its error is on stderr
                raise RuntimeError(f"the floor's helper could not run in {group}")
            g0, m0 = group.stats()["cpu_seconds"] or 0.0, machine_cpu_s()
            helper.stdin.write("\n")
            helper.stdin.flush()
            own = json.loads(helper.stdout.readline())
            g1, m1 = group.stats()["cpu_seconds"] or 0.0, machine_cpu_s()
        finally:
            helper.stdin.close()
            helper.wait(30)
    finally:
        group.try_remove()
        cgroups.Cgroup("rock-bench").try_remove(kill=False)  # the top one: try_remove leaves a group's top directory
    return {"bwrap": (g1 - g0 - own) / n * 1e3, "machine": (m1 - m0) / n * 1e3}


async def _rock_block(worker: Worker, n: int) -> dict[str, float]:
    zygote = worker.runtime.zygote
    zygote_pid = zygote._proc.pid if zygote is not None and zygote._proc is not None else None
    sandbox = 0.0
    split = dict.fromkeys(SANDBOX_PARTS, 0.0)
    reading = 0.0
    m0, w0 = machine_cpu_s(), _own_cpu_s()
    z0 = process_cpu_s(zygote_pid) if zygote_pid else 0.0
    for _ in range(n):
        sid = f"b{uuid.uuid4().hex[:10]}"
        try:
            await first_output(worker, sid)
            group = cgroups.Cgroup(worker.get(sid).runtime_id)
            used = group.stats()["cpu_seconds"] or 0.0
            sandbox += used
            probe = _own_cpu_s()
            for part, seconds in _sandbox_parts(group, used).items():
                split[part] += seconds
            reading += _own_cpu_s() - probe  # the split's own reads: not the worker's, nor the machine's
        finally:
            if sid in {s.sandbox_id for s in worker.list()}:
                await worker.stop(sid)
    await worker.runtime._drain()  # the teardown thread's share of this block's starts
    z1 = process_cpu_s(zygote_pid) if zygote_pid else 0.0
    return {"worker": (_own_cpu_s() - w0 - reading) / n * 1e3, "zygote": (z1 - z0) / n * 1e3,
            "sandbox": sandbox / n * 1e3, "machine": (machine_cpu_s() - m0 - reading) / n * 1e3,
            **{f"sandbox.{k}": v / n * 1e3 for k, v in split.items()}}


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
                   sandbox_cpu_ms_per_start={k: _spread(rock, f"sandbox.{k}")
                                             for k in SANDBOX_PARTS},
                   floor_cpu_ms_per_start={key: _spread(floor, key) for key in ("bwrap", "machine")},
                   cpus=os.cpu_count())]
