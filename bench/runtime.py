"""Sandbox runtime metrics, per backend, through the worker (issue 2), next to raw floors.

- start_to_first_output: create a sandbox, open a session, run ``echo`` (sequential)
- start_to_first_output_burst: the same for a burst of sandboxes started at once
- warm_start_to_first_output: the same, taken from a warm pool
- start_to_first_output_busy_host: bwrap's sequential starts again with Docker containers
  running beside them (``bench.busyhost``)
- echo_round_trip: ``echo`` in a persistent session
Floors measured in the same run: raw ``bwrap ... true``, raw ``docker run --rm --network none IMG true``,
and bash on a pty driven directly (the floor for a persistent-session round trip).
"""

from __future__ import annotations

import asyncio
import os
import pty
import shutil
import subprocess
import tempfile
import time
import uuid

from bench.busyhost import busy_host
from bench.report import Context, machine_cpu_s, record, state_fs
from rock.config import Settings
from rock.worker.worker import Worker

# The worker measured here runs inside the admin in production, on uvicorn's loop: uvloop.
LOOP = "uvloop"
IMAGE = "python:3.11"
# Pause between phases: the kernel frees a phase's sandboxes (namespaces, cgroups, mounts) in the
# background, and the next phase is measured against floors taken on a quiet machine.
SETTLE_S = 1.0
# The minimal bwrap root (binding all of / would copy every host mount, Docker's churning ones too).
BWRAP_FLOOR = ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
               "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin", "--dev", "/dev", "--proc", "/proc",
               "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--die-with-parent", "--new-session",
               "true"]
DOCKER_FLOOR = ["docker", "run", "--rm", "--network", "none", IMAGE, "true"]


def _time_command(argv: list[str], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t)
    return samples


def _pty_bash_round_trip(n: int) -> list[float]:
    """Round trip of ``echo`` through a bare interactive bash on a pty: no agent, no framing."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--noprofile", "--norc", "--noediting", "-i"])
    os.write(fd, b"stty -echo; PS1=''; PS2=''\n")
    time.sleep(0.2)
    os.read(fd, 65536)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        os.write(fd, b"echo hi; echo __end__\n")
        buf = b""
        while b"__end__" not in buf:
            buf += os.read(fd, 65536)
        samples.append(time.perf_counter() - t)
    os.write(fd, b"exit\n")
    os.waitpid(pid, 0)
    os.close(fd)
    return samples


async def first_output(worker: Worker, sid: str) -> float:
    t = time.perf_counter()
    await worker.create(worker.default_spec(sid))
    agent = worker.agent(sid)
    await agent.create_session("bench")
    result = await agent.run("bench", "echo hi")
    elapsed = time.perf_counter() - t
    if result.output != "hi\n":
        raise RuntimeError(f"unexpected output {result.output!r}")
    return elapsed


async def _sequential(worker: Worker, n: int) -> tuple[list[float], int]:
    samples = []
    for i in range(n):
        sid = f"b{uuid.uuid4().hex[:10]}"
        try:
            samples.append(await first_output(worker, sid))
        except Exception as exc:  # counted in success_rate
            print(f"[bench] start {i} failed: {exc}")
        if sid in {s.sandbox_id for s in worker.list()}:
            await worker.stop(sid)
    return samples, n


async def _burst(worker: Worker, n: int) -> tuple[list[float], int, float]:
    sids = [f"b{uuid.uuid4().hex[:10]}" for _ in range(n)]
    t = time.perf_counter()
    results = await asyncio.gather(*(first_output(worker, s) for s in sids), return_exceptions=True)
    total = time.perf_counter() - t
    await asyncio.gather(*(worker.stop(s) for s in sids if s in {x.sandbox_id for x in worker.list()}),
                         return_exceptions=True)
    return [r for r in results if isinstance(r, float)], n, total


async def _warm(worker: Worker, n: int) -> tuple[list[float], int]:
    worker.pool.configure(worker.default_spec(), 4)
    samples = []
    for _ in range(n):
        await asyncio.wait_for(worker.pool.filled.wait(), 120)  # not timed: the pool refills between starts
        sid = f"b{uuid.uuid4().hex[:10]}"
        try:
            samples.append(await first_output(worker, sid))
            assert worker.get(sid).warm
        finally:
            await worker.stop(sid)
    await worker.pool.close()
    return samples, n


async def echoes(worker: Worker, n: int) -> list[float]:
    sid = f"b{uuid.uuid4().hex[:10]}"
    await worker.create(worker.default_spec(sid))
    agent = worker.agent(sid)
    await agent.create_session("bench")
    for _ in range(50):
        await agent.run("bench", "echo hi")
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await agent.run("bench", "echo hi")
        samples.append(time.perf_counter() - t)
    await worker.stop(sid)
    return samples


async def run(ctx: Context) -> list[dict]:
    records: list[dict] = []
    n_seq, n_burst, n_echo = ctx.n(20, 100), ctx.n(20, 100), ctx.n(500, 2000)
    ctx.progress("floor: bash on a pty")
    pty_floor = _pty_bash_round_trip(n_echo)
    for backend in ctx.backends:
        floor = None
        if backend == "bwrap":
            ctx.progress(f"floor: raw bwrap true x{n_seq}")
            floor = _time_command(BWRAP_FLOOR, n_seq)
        elif backend == "docker":
            ctx.progress(f"floor: raw docker run --rm --network none {IMAGE} true x{n_seq}")
            floor = _time_command(DOCKER_FLOOR, n_seq)
        await asyncio.sleep(SETTLE_S)  # the previous backend's burst is still being torn down
        state = tempfile.mkdtemp(prefix="rb-", dir="/tmp")
        worker = Worker(Settings(state_dir=state, backend=backend, default_memory="512m", default_cpus=1.0), backend)
        await worker.start()
        try:
            # Untimed: a backend's first start of an image prepares it (bwrap unpacks its rootfs once).
            ctx.progress(f"{backend}: first start (prepares {IMAGE})")
            first, _ = await _sequential(worker, 1)
            ctx.progress(f"{backend}: start -> first output, sequential x{n_seq}")
            cpu0 = machine_cpu_s()
            samples, attempts = await _sequential(worker, n_seq)
            cpu_ms = round((machine_cpu_s() - cpu0) / attempts * 1e3, 2)
            records.append(record("start_to_first_output", backend, samples, attempts, floor,
                                  first_start_ms=round(first[0] * 1e3, 1) if first else None,
                                  state_fs=state_fs(state), machine_cpu_ms_per_start=cpu_ms))
            if backend == "bwrap":
                busy = await busy_host(ctx, lambda: _sequential(worker, n_seq),
                                       lambda: _time_command(BWRAP_FLOOR, n_seq), samples, cpu_ms, IMAGE)
                if busy is not None:
                    records.append(busy)
                await asyncio.sleep(SETTLE_S)
            ctx.progress(f"{backend}: start -> first output, burst of {n_burst}")
            samples, attempts, total = await _burst(worker, n_burst)
            records.append(record("start_to_first_output_burst", backend, samples, attempts, floor,
                                  burst_total_ms=round(total * 1e3, 1)))
            await asyncio.sleep(SETTLE_S)
            ctx.progress(f"{backend}: warm-pool start -> first output x{n_seq}")
            samples, attempts = await _warm(worker, n_seq)
            records.append(record("warm_start_to_first_output", backend, samples, attempts))
            await asyncio.sleep(SETTLE_S)
            ctx.progress(f"{backend}: echo round trip x{n_echo}")
            records.append(record("echo_round_trip", backend, await echoes(worker, n_echo), floor_s=pty_floor))
        finally:
            await worker.close(stop_sandboxes=True)
            shutil.rmtree(state, ignore_errors=True)
    return records
