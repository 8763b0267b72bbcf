"""Soak: create -> command -> stop lifecycles through the SDK and a real admin, then a leak count.

``soak_lifecycles`` (per backend): ``n`` lifecycles (10,000 on bwrap and 1,000 on docker in the
full run), ``failures``, ``leaks`` (containers, processes, cgroups and mounts of that admin left
after its last stop) and the admin's resident memory at start and end (``admin_rss_mb_start``,
after a warm-up of 100 lifecycles, ``admin_rss_mb_end``), every 1,000 lifecycles
(``admin_rss_mb_every_1000``) and ``admin_rss_growth_mb``: the end less the value after the
first 1,000 (flat, within 10 MB, means no per-sandbox leak in the admin: it holds only live
sandboxes; ended ones are in its store). p50/p99 are of one whole lifecycle. Concurrency ``CONCURRENCY`` lifecycles at a time.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import Context, record

FULL = {"bwrap": 10000, "docker": 1000}
QUICK = {"bwrap": 300, "docker": 60}
WARMUP = 100
CONCURRENCY = 8


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def leftovers(state_dir: str) -> list[str]:
    """The test suite's leak audit on the admin's state dir and its worker's cgroups."""
    from rock.runtime.host_policy import owner_key
    from rock.runtime.leaks import leftovers as audit
    from rock.worker.worker import Worker

    return audit(os.path.realpath(state_dir), {owner_key(Worker.owner_of(Path(state_dir)))})


async def lifecycle(url: str) -> None:
    from rock.actions import CreateBashSessionRequest
    from rock.sdk.sandbox.client import Sandbox
    from rock.sdk.sandbox.config import SandboxConfig

    sandbox = Sandbox(SandboxConfig(image="python:3.11", base_url=url, startup_timeout=120))
    await sandbox.start()
    try:
        await sandbox.create_session(CreateBashSessionRequest(session="s"))
        out = await sandbox.arun(cmd="echo soak", session="s")
        if "soak" not in out.output:
            raise RuntimeError(f"unexpected output {out.output!r}")
    finally:
        await sandbox.stop()


async def soak(ctx: Context, backend: str) -> dict:
    n = (QUICK if ctx.quick else FULL)[backend]
    admin = AdminProcess(backend, prefix="rock-soak-")
    url = admin.start()
    pid = int((Path(admin.state) / "admin.pid").read_text())
    times, failures, errors = [], 0, []
    rss_start, rss_every = None, {}
    queue = iter(range(n + WARMUP))
    done = 0

    async def one_worker():
        nonlocal failures, done, rss_start
        for i in queue:
            t = time.perf_counter()
            try:
                await lifecycle(url)
                if i >= WARMUP:
                    times.append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - counted, the first few kept
                failures += 1
                if len(errors) < 3:
                    errors.append(repr(exc)[:300])
            done += 1
            if done == WARMUP:
                rss_start = rss_mb(pid)
            if done % 1000 == 0:
                rss_every[done] = round(rss_mb(pid), 1)
                ctx.progress(f"soak {backend}: {done} of {n + WARMUP} lifecycles, {failures} failed, "
                             f"admin RSS {rss_every[done]} MB")

    try:
        await asyncio.gather(*(one_worker() for _ in range(CONCURRENCY)))
        rss_end = rss_mb(pid)
    finally:
        state = admin.state
        admin.stop()
    await asyncio.sleep(2)
    leaks = leftovers(state)
    return record("soak_lifecycles", backend, times, attempts=n, failures=failures, leaks=len(leaks),
                  leak_list=leaks[:10], errors=errors, admin_rss_mb_start=round(rss_start or 0.0, 1),
                  admin_rss_mb_end=round(rss_end, 1), admin_rss_mb_every_1000=rss_every,
                  admin_rss_growth_mb=round(rss_end - rss_every[1000], 1) if 1000 in rss_every else None,
                  concurrency=CONCURRENCY)


async def run(ctx: Context) -> list[dict]:
    out = []
    for backend in [b for b in ctx.backends if b in FULL]:
        ctx.progress(f"soak {backend}: create -> command -> stop, {CONCURRENCY} at a time")
        out.append(await soak(ctx, backend))
    return out

