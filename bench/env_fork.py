"""``env_fork_8_ms``: fork(8) of a GEM env mid-episode (rock.envs.forking: the seed and the
actions so far replayed into 8 new envs in the env's sandbox, each checked), through an admin,
against 8 plain ``make``s at once of the same env in the same run (the floor), in alternating
blocks. Run by the ``snapshots`` part (bench/snapshots.py), per backend. On gVisor also
``env_full_fork_8_ms``: ``fork(8, how="full")``, a memory fork of the env's sandbox per child,
until the 8 handles are returned (each child's agent answering), against the same floor.
"""

from __future__ import annotations

import asyncio
import time

from bench.admin import AdminProcess
from bench.report import Context, record
from rock.envs.client import AsyncEnv, AsyncHttp

ENV_ID = "game:GuessTheNumber-v0-hard"
STEPS = 5  # actions played before the fork: what each child replays


async def _fork(parent: AsyncEnv, how: str = "replay") -> tuple[float, list[AsyncEnv]]:
    t = time.perf_counter()
    children = await parent.fork(8, how=how)
    return time.perf_counter() - t, children


async def _makes(http: AsyncHttp) -> tuple[float, list[AsyncEnv]]:
    t = time.perf_counter()
    envs = await asyncio.gather(*(AsyncEnv.create(ENV_ID, http=http) for _ in range(8)))
    return time.perf_counter() - t, list(envs)


async def _backend(ctx: Context, backend: str) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-envfork-")
    url = admin.start()
    http = AsyncHttp(url)
    try:
        parent = await AsyncEnv.create(ENV_ID, http=http)
        await parent.reset(seed=7)
        for k in range(STEPS):
            await parent.step(f"\\boxed{{{100 + k}}}")
        # One of each untimed: the first make in a sandbox pays gem's import in its env host.
        for warm in (await _fork(parent), await _makes(http)):
            await asyncio.gather(*(e.close() for e in warm[1]))
        forks, makes = [], []
        for _ in range(ctx.n(3, 5)):
            for _ in range(ctx.n(2, 4)):
                took, children = await _fork(parent)
                forks.append(took)
                await asyncio.gather(*(c.close() for c in children))
            for _ in range(ctx.n(2, 4)):
                took, envs = await _makes(http)
                makes.append(took)
                await asyncio.gather(*(e.close() for e in envs))
        records = [record("env_fork_8_ms", backend, forks, floor_s=makes, floor="8 plain makes at once, same env",
                          env_id=ENV_ID, replayed_steps=STEPS)]
        if backend == "gvisor":
            fulls, makes = [], []
            for _ in range(ctx.n(2, 3)):
                took, children = await _fork(parent, "full")
                fulls.append(took)
                await asyncio.gather(*(c.close() for c in children))  # each stops its own sandbox
                took, envs = await _makes(http)
                makes.append(took)
                await asyncio.gather(*(e.close() for e in envs))
            records.append(record("env_full_fork_8_ms", backend, fulls, floor_s=makes,
                                  floor="8 plain makes at once, same env", env_id=ENV_ID))
        await parent.close()
        return records
    finally:
        await http.aclose()
        admin.stop()


async def run(ctx: Context, backends: list[str]) -> list[dict]:
    records = []
    for backend in backends:
        if backend == "local":
            continue
        ctx.progress(f"env fork: {backend}")
        records += await _backend(ctx, backend)
    return records
