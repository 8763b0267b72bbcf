"""The burst benchmark: 100 ``Sandbox.start()`` at once through the SDK, per backend, against
what the same machine needs for 100 bare isolation units at once, timed in alternating blocks.

sdk_burst_100     each start's time until ready; success_rate counts failures; wall_s the burst
burst_floor_100   the floor, the same 100-at-once without ROCK: on bwrap, 100 bare ``bwrap``
                  with the sandboxes' namespaces (pid, ipc, uts, net, mount, cgroup) running
                  ``true``; on docker, 100 containers created and started through the Docker
                  SDK (no network, the same image). ``ratio_to_floor`` compares the p99s.

sustained_starts_per_s   bwrap: a stream of starts at concurrency 16 (2,000 in all; 200 with
                  --quick), each lane starting a sandbox through the SDK and deleting it, one after
                  the other; ``ratio_to_floor`` against bare bwraps (the same namespaces, running
                  ``true``) in 16 lanes, timed in alternating blocks. Target: >= 0.5.

Its own part, run last: 100 sandboxes are torn down for seconds after it, which would show in
any latency measured next.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from bench.admin import AdminProcess
from bench.report import machine_cpu_s, percentile, record, state_fs
from bench.sdk import _config, _start_to_first_output, usable
from rock.sdk.sandbox import Sandbox

N = 100
SETTLE_S = 3.0  # what the last block tore down is still being freed by the kernel
BARE_BWRAP = ["--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-ipc",
              "--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--new-session", "--die-with-parent", "true"]


async def _time_start(sandbox: Sandbox) -> float | None:
    """Seconds until ``start()`` returned; None when it failed (counted, not raised)."""
    t0 = time.perf_counter()
    try:
        await sandbox.start()
        return time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a failed start is counted, not raised
        return None


async def _rock_burst(url: str) -> tuple[list[float | None], float]:
    """100 start() at once; the sandboxes are deleted after the last is ready, not while the
    others still start (a user's burst keeps its sandboxes)."""
    sandboxes = [Sandbox(_config(url)) for _ in range(N)]
    t0 = time.perf_counter()
    try:
        results = await asyncio.gather(*(_time_start(s) for s in sandboxes))
        return list(results), time.perf_counter() - t0
    finally:
        await asyncio.gather(*(s.delete() for s in sandboxes if s.sandbox_id), return_exceptions=True)
        await asyncio.gather(*(s.aclose() for s in sandboxes), return_exceptions=True)


# Started from bash, not from this process: forking a large Python 100 times (and asyncio's
# per-child watcher threads) would be the benchmark's own cost, not bwrap's. Each line is one
# bwrap's end, against the common start, as each start() is timed from the burst's start.
FLOOR_SCRIPT = """t0=$EPOCHREALTIME
for i in $(seq "$1"); do { "$2" "${@:3}" && echo "$t0 $EPOCHREALTIME"; } & done; wait"""


async def _bwrap_floor() -> tuple[list[float | None], float]:
    bwrap = shutil.which("bwrap") or "bwrap"
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("bash", "-c", FLOOR_SCRIPT, "floor", str(N), bwrap, *BARE_BWRAP,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    wall = time.perf_counter() - t0
    done = [float(end) - float(start) for start, end in (line.split() for line in out.decode().splitlines())]
    return done + [None] * (N - len(done)), wall


def _docker_floor_sync(image: str) -> tuple[list[float | None], float]:
    import docker

    client = docker.from_env(max_pool_size=N + 8)
    made = []

    def one(_: int) -> float | None:
        t = time.perf_counter()
        try:
            container = client.containers.create(image, ["sleep", "120"], network_mode="none",
                                                  name=f"rock-bench-floor-{uuid.uuid4().hex[:10]}")
            made.append(container)
            container.start()
            return time.perf_counter() - t
        except Exception:  # noqa: BLE001 - a failed start is counted, not raised
            return None

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(N) as pool:
            results = list(pool.map(one, range(N)))
        return results, time.perf_counter() - t0
    finally:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda c: c.remove(force=True), made))
        client.close()


async def _floor(backend: str, image: str) -> tuple[list[float | None], float] | None:
    if backend == "docker":
        return await asyncio.to_thread(_docker_floor_sync, image)
    if backend == "bwrap":
        return await _bwrap_floor()
    return None  # local: no isolation, nothing to compare with


async def _burst(ctx, backend: str) -> list[dict]:
    from rock.config import Settings

    image = Settings().default_image
    with AdminProcess(backend, prefix="rock-bench-burst-") as admin:
        url = admin.url
        rock_s: list[float] = []
        floor_s: list[float] = []
        rock_walls, floor_walls, failures = [], [], 0
        cpu = {"ROCK": 0.0, "bare": 0.0}  # the machine's CPU seconds over each side's bursts
        await _start_to_first_output(url)  # warm-up: unpack the image, compile, caches
        # Blocks in ABBA order (ROCK then bare, then bare then ROCK): what one burst leaves the
        # engine or the kernel to clean up weighs on whichever runs next, and that alternates.
        for block in range(ctx.n(2, 4)):
            first, second = ("ROCK", "bare") if block % 2 == 0 else ("bare", "ROCK")
            ctx.progress(f"burst {backend}: block {block + 1}, {N} starts {first}, then {N} {second}")
            for which in (first, second):
                await asyncio.sleep(SETTLE_S)
                cpu0 = machine_cpu_s()
                if which == "ROCK":
                    results, wall = await _rock_burst(url)
                    rock_s += [r for r in results if r is not None]
                    failures += sum(r is None for r in results)
                    rock_walls.append(wall)
                elif (floor := await _floor(backend, image)) is not None:
                    floor_s += [r for r in floor[0] if r is not None]
                    floor_walls.append(floor[1])
                cpu[which] += machine_cpu_s() - cpu0
    # The machine's CPU per burst, everything included (for ROCK: the admin, the SDK client, each
    # sandbox's agent; start and delete): on a machine the burst keeps busy, the difference over
    # its cores is about what ROCK's burst can take longer than the bare one.
    rock = record("sdk_burst_100", backend, rock_s, attempts=len(rock_s) + failures,
                  wall_s=round(max(rock_walls), 3), blocks=len(rock_walls),
                  cpu_s_per_burst=round(cpu["ROCK"] / len(rock_walls), 2), cores=os.cpu_count(),
                  state_fs=state_fs(admin.state))
    if not floor_walls:
        return [rock]
    floor = record("burst_floor_100", backend, floor_s, attempts=N * len(floor_walls),
                   wall_s=round(max(floor_walls), 3), blocks=len(floor_walls),
                   cpu_s_per_burst=round(cpu["bare"] / len(floor_walls), 2),
                   what="bare bwrap, same namespaces" if backend == "bwrap" else "docker SDK create+start")
    if rock_s and floor_s:
        rock["floor_p99_ms"] = round(percentile(floor_s, 0.99) * 1e3, 1)
        rock["ratio_to_floor"] = round(percentile(rock_s, 0.99) / percentile(floor_s, 0.99), 2)
    return [rock, floor]


LANES = 16
# Each lane runs bare bwraps one after the other, as each SDK lane runs its sandboxes.
LANES_SCRIPT = """for lane in $(seq "$1"); do ( for i in $(seq "$2"); do "$3" "${@:4}" || exit 1; done ) & done; wait"""


async def _sdk_lanes(url: str, per_lane: int) -> tuple[int, int, float]:
    """(started, failed, wall s) for ``LANES`` lanes of start-then-delete through the SDK."""
    started = failed = 0

    async def lane() -> None:
        nonlocal started, failed
        for _ in range(per_lane):
            sandbox = Sandbox(_config(url))
            try:
                await sandbox.start()
                started += 1
            except Exception:  # noqa: BLE001 - a failed start is counted, not raised
                failed += 1
            finally:
                if sandbox.sandbox_id:
                    await asyncio.gather(sandbox.delete(), return_exceptions=True)
                await sandbox.aclose()

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(LANES)))
    return started, failed, time.perf_counter() - t0


async def _bare_lanes(per_lane: int) -> tuple[int, float]:
    bwrap = shutil.which("bwrap") or "bwrap"
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("bash", "-c", LANES_SCRIPT, "lanes", str(LANES), str(per_lane), bwrap,
                                                *BARE_BWRAP)
    await proc.wait()
    return (LANES * per_lane if proc.returncode == 0 else 0), time.perf_counter() - t0


async def _sustained(ctx) -> list[dict]:
    """``sustained_starts_per_s`` on bwrap: rates of whole blocks (starts / wall), ROCK's and the
    floor's blocks alternating."""
    total = ctx.n(200, 2000)
    blocks = ctx.n(2, 4)
    per_lane = max(1, total // (LANES * blocks))
    with AdminProcess("bwrap", prefix="rock-bench-sustained-") as admin:
        url = admin.url
        rock_rates, floor_rates, started, failed = [], [], 0, 0
        await _start_to_first_output(url)  # warm-up
        for block in range(blocks):
            ctx.progress(f"sustained bwrap: block {block + 1}/{blocks}, {LANES} lanes x {per_lane} start+delete, "
                         "then the same bare")
            await asyncio.sleep(SETTLE_S)
            ok, bad, wall = await _sdk_lanes(url, per_lane)
            started, failed = started + ok, failed + bad
            rock_rates.append(ok / wall)
            await asyncio.sleep(SETTLE_S)
            done, wall = await _bare_lanes(per_lane)
            floor_rates.append(done / wall)
    rate = sum(rock_rates) / len(rock_rates)
    floor = sum(floor_rates) / len(floor_rates)
    return [{"metric": "sustained_starts_per_s", "backend": "bwrap", "n": started + failed,
             "success_rate": round(started / (started + failed), 4) if started + failed else 0.0,
             "per_s": round(rate, 1), "concurrency": LANES, "blocks": blocks,
             "floor_per_s": round(floor, 1), "floor_what": "bare bwrap `true`, same namespaces, same lanes",
             "ratio_to_floor": round(rate / floor, 3) if floor else None, "target": ">= 0.5 x floor",
             "state_fs": state_fs(admin.state)}]


async def run(ctx) -> list[dict]:
    records = []
    for backend in usable(ctx):
        records += await _burst(ctx, backend)
    if "bwrap" in usable(ctx):
        records += await _sustained(ctx)
    return records
