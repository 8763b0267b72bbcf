"""bwrap starts on a busy host: the sequential start -> first output of ``bench.runtime`` again
while Docker containers run beside the sandboxes, as on a machine that serves both backends
(``start_to_first_output_busy_host``).

Each running container adds two mounts to the host's table (its root and its network
namespace), and bwrap reads the whole table after every mount it makes, so before the zygote
trimmed the table (``rock.agent.mounttrim``) a bwrap start's CPU grew with the containers next
to it. The record carries the quiet run's p50 (``ratio_to_quiet``), a bare ``bwrap true`` timed
on the same busy host (``floor_p50_ms``: bwrap alone reads the whole table too), the host's
mount count, and the machine's CPU per start on both runs.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from bench.report import Context, machine_cpu_s, percentile, record

LABEL = {"rock.bench": "busy-host"}


def _host_mounts() -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def _containers(image: str, n: int) -> tuple[object, list]:
    """``n`` idle containers (and the client); every one made is removed again if any fails."""
    import docker

    client = docker.from_env(timeout=120)
    client.ping()
    # Left by a run that was killed before its clean-up: they would count as this run's.
    left = client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in LABEL.items()]})
    _remove(client, left, close=False)
    made, errors = [], []

    def one(_: int) -> None:
        try:
            made.append(client.containers.run(image, ["sleep", "900"], detach=True, network_mode="none", labels=LABEL))
        except Exception as exc:  # noqa: BLE001 - collected: the ones made are removed, then it is raised
            errors.append(exc)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))
    if errors:
        _remove(client, made)
        raise errors[0]
    return client, made


def _remove(client, made: list, close: bool = True) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda c: c.remove(force=True), made))
    if close:
        client.close()


async def busy_host(ctx: Context, sequential, time_floor, quiet: list[float], quiet_cpu_ms: float | None,
                    image: str) -> dict | None:
    """``sequential()``: (samples, attempts) of the runtime part's sequential starts;
    ``time_floor()``: bare bwrap samples. None (and a line saying why) without a Docker engine."""
    n = ctx.n(50, 100)
    ctx.progress(f"bwrap: start -> first output with {n} Docker containers running beside it")
    try:
        client, made = await asyncio.to_thread(_containers, image, n)
    except Exception as exc:  # noqa: BLE001 - no engine here: the rest of the part still runs
        ctx.progress(f"busy host skipped: could not run {n} Docker containers beside the sandboxes: {exc}")
        return None
    try:
        mounts = _host_mounts()
        floor = time_floor()
        cpu0 = machine_cpu_s()
        samples, attempts = await sequential()
        cpu_ms = (machine_cpu_s() - cpu0) / max(attempts, 1) * 1e3
    finally:
        await asyncio.to_thread(_remove, client, made)
    rec = record("start_to_first_output_busy_host", "bwrap", samples, attempts, floor, containers=n, host_mounts=mounts,
                 machine_cpu_ms_per_start=round(cpu_ms, 2), quiet_machine_cpu_ms_per_start=quiet_cpu_ms)
    if samples and quiet:
        rec["quiet_p50_ms"] = round(percentile(quiet, 0.5) * 1e3, 3)
        rec["ratio_to_quiet"] = round(rec["p50_ms"] / rec["quiet_p50_ms"], 2)
    return rec
