"""Density: as many idle sandboxes as the machine holds, each answering a command at the end.

``density_idle_sandboxes`` (per backend): ``count`` started and idle at once, ``answered`` (each
runs ``echo`` at the end), ``private_mb_each`` (the mean private memory, USS, of the processes in
a sample of the sandboxes' cgroups) and ``available_mb_each`` (the drop in the machine's
MemAvailable per sandbox: the kernel's share too, page tables, namespaces, mounts), measured at
rest, with ``memory_merging`` (whether agents' identical pages are merged by KSM). Targets:
>= 2,000 idle bwrap sandboxes on a 2-core / 24 GB VM at <= 2 MB private memory each.

It stops adding sandboxes at the target count, when MemAvailable falls under ``RESERVE_MB``, or
when starts fail. Through the worker in this process, as the admin embeds it (on uvloop).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from bench.report import Context, record
from rock.agent.sessions import SPARE_IDLE
from rock.config import Settings
from rock.worker.worker import Worker, memory_merging

LOOP = "uvloop"
TARGET = {"bwrap": 2000, "docker": 300}
QUICK = {"bwrap": 200, "docker": 50}
BATCH = 50
RESERVE_MB = 3072
SAMPLE = 20


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    return 0


def uss_bytes(pid: int) -> int:
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean", "Private_Dirty")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        pass
    return total


def pids_by_group(needles: dict[str, str]) -> dict[str, list[int]]:
    """sandbox id -> pids whose cgroup path names its runtime id (one pass over /proc)."""
    out: dict[str, list[int]] = {sid: [] for sid in needles}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                groups = f.read()
        except OSError:
            continue
        for sid, rid in needles.items():
            if "/" + rid in groups:
                out[sid].append(int(entry))
                break
    return out


def _ksm(name: str) -> int | None:
    try:
        return int(Path("/sys/kernel/mm/ksm", name).read_text())
    except (OSError, ValueError):
        return None


async def _ksm_settled(ctx: Context, backend: str, limit_s: float = 900) -> None:
    """Wait for two full KSM scans from now: pages merge on the second look at them."""
    start, t0 = _ksm("full_scans") or 0, time.monotonic()
    while (_ksm("full_scans") or 0) < start + 2 and time.monotonic() - t0 < limit_s:
        ctx.progress(f"density {backend}: waiting for KSM's scans ({_ksm('pages_sharing')} pages shared)")
        await asyncio.sleep(10)


def _ksmd_cpu_s() -> float | None:
    """CPU seconds the kernel's merging thread has used (what merging costs the machine)."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)
            if entry.isdigit() and fields[0].endswith("(ksmd"):
                parts = fields[1].split()
                return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            continue
    return None


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def density(ctx: Context, backend: str) -> dict:
    target = (QUICK if ctx.quick else TARGET)[backend]
    state = Path(tempfile.mkdtemp(prefix="rock-density-"))
    worker = Worker(Settings(state_dir=state, backend=backend))
    await worker.start()
    ids: list[str] = []
    failures, stop_reason = 0, f"reached the target of {target}"
    before = available_bytes()
    t0 = time.perf_counter()
    try:
        while len(ids) < target:
            if available_bytes() < RESERVE_MB << 20:
                stop_reason = f"MemAvailable under {RESERVE_MB} MB"
                break
            batch = min(BATCH, target - len(ids))
            results = await asyncio.gather(*(worker.create(worker.default_spec(f"den{uuid.uuid4().hex[:10]}"))
                                             for _ in range(batch)), return_exceptions=True)
            made = [r.sandbox_id for r in results if not isinstance(r, BaseException)]
            ids += made
            failures += batch - len(made)
            if failures:
                stop_reason = f"{failures} start(s) failed: {next(r for r in results if isinstance(r, BaseException))}"
                break
            if len(ids) % 500 < BATCH:
                ctx.progress(f"density {backend}: {len(ids)} idle sandboxes")
        started_s = time.perf_counter() - t0
        ksmd_before, rest_t0 = _ksmd_cpu_s(), time.perf_counter()
        # At rest: past the agents' spare-bash idle time, so what an idle sandbox holds, not a
        # sandbox that has just started (the last batch would still hold its spare bash).
        ctx.progress(f"density {backend}: {len(ids)} sandboxes; {SPARE_IDLE + 5:.0f} s at rest before measuring")
        await asyncio.sleep(SPARE_IDLE + 5)
        if memory_merging(worker.settings.merge_agent_memory) == "on":
            await _ksm_settled(ctx, backend)
        after = available_bytes()
        merging = memory_merging(worker.settings.merge_agent_memory)
        ksm_sharing = _ksm("pages_sharing")
        ksmd_after, rest_s = _ksmd_cpu_s(), time.perf_counter() - rest_t0
        ksmd_share = round((ksmd_after - ksmd_before) / rest_s, 3) if ksmd_before is not None and ksmd_after else None
        sample = ids[:: max(1, len(ids) // SAMPLE)][:SAMPLE]
        needles = {sid: worker.handle(sid).runtime_id for sid in sample}
        groups = await asyncio.to_thread(pids_by_group, needles)
        private = [sum(uss_bytes(p) for p in pids) for pids in groups.values() if pids]
        answers = await asyncio.gather(*(worker.agent(sid).exec("echo ok", shell=True, timeout=60) for sid in ids),
                                       return_exceptions=True)
        answered = sum(1 for a in answers if not isinstance(a, BaseException) and a.stdout == "ok\n")
    finally:
        await worker.close(stop_sandboxes=True)
        shutil.rmtree(state, ignore_errors=True)
    n = len(ids)
    return record("density_idle_sandboxes", backend, [], attempts=n + failures, count=n, answered=answered,
                  memory_merging=merging, ksm_pages_sharing=ksm_sharing, ksmd_cpu_share_at_rest=ksmd_share,
                  success_rate=round(answered / (n + failures), 4) if n + failures else 0.0,
                  failures=failures, stopped_because=stop_reason, start_seconds=round(started_s, 1),
                  private_mb_each=round(sum(private) / len(private) / 2**20, 3) if private else None,
                  available_mb_each=round((before - after) / n / 2**20, 3) if n else None,
                  target_count=TARGET[backend], target_private_mb=2.0 if backend == "bwrap" else None)


async def run(ctx: Context) -> list[dict]:
    _raise_fd_limit()
    out = []
    for backend in [b for b in ctx.backends if b in TARGET]:
        ctx.progress(f"density {backend}: starting idle sandboxes in batches of {BATCH}")
        out.append(await density(ctx, backend))
    return out
