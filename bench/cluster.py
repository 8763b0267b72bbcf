"""The cluster: placement decisions per admin process, and a burst of bwrap sandboxes across three
local Ray nodes next to the same burst on one machine without Ray, in the same run.

cluster_placements_per_s   decisions (choose a node + reserve, as ``ClusterWorker`` does) per
                           second in one admin process, over the three real nodes' reports
cluster_burst_1000         1,000 sandboxes created at once through an admin on a 3-node Ray
                           cluster: each one's time from its create request to the first output
                           of a command in it (p50/p99), success_rate, wall_s
single_burst_1000          the same burst on one admin with its embedded worker (the floor)

Each burst record also says where the machine's CPU went while it ran (``cpu_s``): all of it
(/proc/stat), the sandboxes (their cgroups), the agent zygotes, Ray's own processes (GCS,
raylets, dashboard, monitors), the ROCK node workers (Ray actors), the admin, the benchmark's
own client and ksmd (the kernel's same-page merging of the agents' memory). On a machine
whose cores the nodes share, a cluster burst is slower
than the same burst on one admin by about the extra CPU it spends divided by the cores.

Run when asked (``--only cluster``) or in a full run: it holds 1,000 sandboxes at its peak.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench import rawhttp
from bench.admin import SANDBOX_API, AdminProcess
from bench.report import machine_cpu_s, percentile, record

BURST = 1000
RAY_PORT = 18250
# Virtual sizes: the three nodes share this machine; what matters is that placement spreads.
NODES = {f"b{i}": {"num_cpus": 64, "memory": 64 << 30, "labels": {"zone": "bench"}} for i in (1, 2, 3)}
BODY = {"cpus": 0.1, "memory": "128m", "auto_clear_seconds": 0}
CONNECTIONS = 256  # the burst's client connections (bench.rawhttp.Pool: the client is not what is measured)


async def _one(client: rawhttp.Pool, made: list[str], failures: collections.Counter,
               phases: list[tuple[float, float]] | None = None) -> float | None:
    """Seconds from the create request to the first command's output; with ``phases``, also
    appends (create answered, first command answered) times."""
    t0 = time.perf_counter()
    try:
        status, body = await client.post(SANDBOX_API + "/start", BODY)
        if status != 200:
            failures[f"start {status}: {body.get('message', '')[:120]}"] += 1
            return None
        sid = body["result"]["sandbox_id"]
        made.append(sid)
        t1 = time.perf_counter()
        status, body = await client.post(SANDBOX_API + "/execute", {"sandbox_id": sid, "command": "echo hi"})
        if status != 200 or body["result"]["stdout"] != "hi\n":
            failures[f"execute {status}: {str(body)[:120]}"] += 1
            return None
        t2 = time.perf_counter()
        if phases is not None:
            phases.append((t1 - t0, t2 - t1))
        return t2 - t0
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, KeyError, TypeError, ValueError) as exc:
        failures[f"client: {type(exc).__name__}: {str(exc)[:100]}"] += 1
        return None


def _kind(pid: str, admin_pids: set[int]) -> str | None:
    """Which part of the run a process is: None for what the cluster does not add (sandboxes)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if not cmd:  # a kernel thread: ksmd scans the agents' offered memory (docs/deploy.md)
        try:
            with open(f"/proc/{pid}/comm") as f:
                return "ksmd" if f.read().strip() == "ksmd" else None
        except OSError:
            return None
    if int(pid) == os.getpid():
        return "bench_client"  # this process: the 1,000 concurrent requests
    if "zygote.py" in cmd:  # each worker's agent zygote (the admin's, or a node worker's)
        # ... but not the agents forked from it, which keep its command line: they live in their
        # sandbox's pid namespace (two NSpid entries) and are counted with the sandboxes.
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
        except OSError:
            return None
        return "zygotes" if len(nspid) == 1 else None
    if int(pid) in admin_pids:
        return "admin"
    if cmd.startswith("ray::"):
        return "node_workers" if "NodeWorker" in cmd or "rock" in cmd else "ray"
    if "gcs_server" in cmd or "raylet" in cmd or "/ray/" in cmd:
        return "ray"
    return None


def _owner_groups() -> dict[str, float]:
    """Each owner's cgroup of sandboxes (rock/<owner key>) and the CPU seconds charged to it so
    far, the ended sandboxes' included (a group's counter holds its children's)."""
    from rock.runtime import cgroups

    out = {}
    base = cgroups.ROOT / cgroups.PREFIX if cgroups.is_v2() else cgroups.v1_mounts().get("cpuacct")
    if base is None:
        return out
    base = base / cgroups.PREFIX if not cgroups.is_v2() else base
    for d in (base.iterdir() if base.is_dir() else ()):
        if d.is_dir():
            cpu = cgroups.Cgroup(f"{cgroups.PREFIX}/{d.name}").stats()["cpu_seconds"]
            if cpu is not None:
                out[d.name] = cpu
    return out


_OTHER_OWNERS = set(_owner_groups())  # what ran before this part: not its sandboxes


def _cpu(admin_pids: set[int]) -> dict[str, float]:
    """CPU seconds so far: the whole machine (busy time), the sandboxes this part started (their
    cgroups), and per kind of long-lived process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = collections.Counter({"machine": machine_cpu_s()})
    out["sandboxes"] = sum(v for k, v in _owner_groups().items() if k not in _OTHER_OWNERS)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        kind = _kind(pid, admin_pids)
        if kind is None:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[kind] += (int(stat[11]) + int(stat[12])) / tick  # utime + stime
    return dict(out)


def _admin_pids(admin: AdminProcess) -> set[int]:
    """The admin's pid and its children (uvicorn may fork)."""
    try:
        pid = int((Path(admin.state) / "admin.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return set()
    pids = {pid}
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids |= {int(x) for x in f.read().split()}
    except OSError:
        pass
    return pids


async def _burst(ctx, url: str, metric: str, backend: str, n: int, admin: AdminProcess | None = None) -> dict:
    client = rawhttp.Pool(url, CONNECTIONS)
    try:
        warm: list[str] = []
        failures: collections.Counter = collections.Counter()
        await _one(client, warm, failures)  # warm-up: unpack the image, compile, connect
        failures.clear()
        await _stop(client, warm)
        made: list[str] = []
        ctx.progress(f"{metric}: {n} sandboxes at once")
        pids = _admin_pids(admin) if admin is not None else set()
        cpu0 = _cpu(pids)
        phases: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one(client, made, failures, phases) for _ in range(n)))
        wall = time.perf_counter() - t0
        cpu1 = _cpu(pids)
        ctx.progress(f"{metric}: {sum(r is not None for r in results)}/{n} ready in {wall:.1f}s; stopping them")
        await _stop(client, made)
    finally:
        client.close()
    ok = [r for r in results if r is not None]
    cpu = {k: round(cpu1.get(k, 0.0) - cpu0.get(k, 0.0), 2) for k in cpu1}
    split = {}
    if phases:  # where a burst's latency goes: waiting for the start, or for the first command
        split = {"start_p50_ms": round(percentile([p[0] for p in phases], 0.5) * 1e3, 1),
                 "first_command_p50_ms": round(percentile([p[1] for p in phases], 0.5) * 1e3, 1)}
    return record(metric, backend, ok, attempts=n, wall_s=round(wall, 3), failures=dict(failures.most_common(5)),
                  cpu_s=cpu, cores=os.cpu_count(), **split)


async def _stop(client: rawhttp.Pool, sids: list[str]) -> None:
    sem = asyncio.Semaphore(64)

    async def one(sid: str) -> None:
        async with sem:
            await client.post(SANDBOX_API + "/stop", {"sandbox_id": sid})

    await asyncio.gather(*(one(s) for s in sids), return_exceptions=True)


def _placements_per_s(ray_cluster) -> tuple[float, int]:
    """Decisions and reservations as the admin makes them, over the three nodes' real reports."""
    import ray

    from rock.worker.resources import Need, NodeInfo
    from rock.cluster.node import ACTOR_PREFIX, NAMESPACE
    from rock.cluster.placement import NodeView, Placement
    from rock.config import Settings
    from rock.runtime.base import SandboxSpec

    views = [NodeView(NodeInfo(**ray.get(ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE).info.remote())))
             for name in ray_cluster.ray_nodes]
    placement = Placement(Settings().placement, overcommit=1.0)
    need = Need.of(SandboxSpec(sandbox_id="x", image="python:3.11", cpus=0.1, memory_bytes=128 << 20))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for _ in range(200):
            node = placement.choose(need, views)
            if node is None:  # all full: as if those sandboxes were stopped again
                for v in views:
                    v.pending = v.pending - v.pending
                continue
            node.pending = node.pending + need.resources
            n += 1
    return n / (time.perf_counter() - t0), n


async def run(ctx) -> list[dict]:
    from rock.cluster.localray import LocalRay

    records = []
    n = BURST
    # The single-node floor: one admin, its worker embedded, no Ray; its burst runs before and
    # after the cluster's (alternating blocks: this VM's speed drifts), the floor is their mean.
    single = AdminProcess("bwrap", prefix="rock-bench-single-")
    single_url = single.start()
    singles = []
    root = Path(tempfile.mkdtemp(prefix="rkb-", dir="/tmp"))
    cluster = LocalRay(root, RAY_PORT, NODES, backend="bwrap")
    admin = None
    try:
        singles.append(await _burst(ctx, single_url, f"single_burst_{n}", "bwrap", n, single))
        await asyncio.sleep(5)  # the kernel tears the previous burst's sandboxes down in the background
        ctx.progress("cluster: starting 3 local Ray nodes with a worker each")
        cluster.start()  # Ray sets signal handlers: only from the main thread
        per_s, decisions = _placements_per_s(cluster)
        records.append({"metric": "cluster_placements_per_s", "backend": "cluster", "n": decisions,
                        "per_s": round(per_s, 1), "target_per_s": 1000})
        admin = _ClusterAdmin(cluster.address)
        url = admin.start()
        rec = await _burst(ctx, url, f"cluster_burst_{n}", "bwrap", n, admin)
        await asyncio.sleep(5)
        singles.append(await _burst(ctx, single_url, f"single_burst_{n}", "bwrap", n, single))
        floors = [s["p50_ms"] for s in singles if s["p50_ms"]]
        floor = sum(floors) / len(floors) if floors else None
        rec.update(nodes=len(NODES), floor_p50_ms=round(floor, 3) if floor else None,
                   floor_p50s_ms=floors, target_p99_ms=10000, target_ratio=1.05)
        if rec["p50_ms"] and floor:
            rec["ratio_to_floor"] = round(rec["p50_ms"] / floor, 3)
        records += [*singles, rec]
    finally:
        if admin is not None:
            admin.stop()
        cluster.stop()
        single.stop()
        shutil.rmtree(root, ignore_errors=True)
    return records


class _ClusterAdmin(AdminProcess):
    """``rock admin start --cluster`` in its own process (SQLite: one admin)."""

    def __init__(self, address: str):
        super().__init__("bwrap", prefix="rock-bench-cluster-")
        self.address = address

    def start(self) -> str:
        self._rock("admin", "start", "--port", str(self.port), "--cluster", self.address, "--timeout", "180")
        return self.url
