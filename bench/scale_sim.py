"""The admin at scale: the REAL admin process (its FastAPI app, the PostgreSQL store, admission and
placement in rock.admin and rock.cluster) against 50 SIMULATED nodes (rock.cluster.simulated:
stand-ins that answer create/stop after a set delay and start nothing), in one run:

scale_sim_burst_N           N sandboxes asked for at once (``start`` with ``wait: false``, as fast
                            as one client sends them); each one's time from the burst's start to
                            its record's ``started_at``, minus the nodes' create delay: the
                            admin-side latency (HTTP, admission, placement, batching, the store).
                            p50/p99; target p99 <= 5 s at 16,000 (ROCK publishes P50 40 s / P99
                            60 s at 16k, real starts included). --quick: fewer, said in ``n``.
scale_sim_placements_per_s  that burst's sandboxes per second, from the first request to the
                            last one running (delay excluded); target >= 2,000. Beside it:
                            ``decisions_per_s``, placement decisions alone over 50 node views.
scale_sim_list_ms           GET /sandboxes (pages across the whole range, a filter)   } p99 with
scale_sim_status_ms         GET /get_status (live, ended: with history), a batch of 100 } 100,000
scale_sim_ui_ms             GET /ui/sandboxes, /ui/fragments/sandboxes, /, a sandbox  } records
                            page; target p99 <= 100 ms. The ended records are written to the
                            store in bulk (COPY) for the set-up; the routes measured are the real
                            ones. ``floor_p50_ms``: GET /health in alternating blocks.
scale_sim_admin_per_live    the admin's memory (RSS growth) and CPU at rest per live sandbox,
                            and its CPU per placement during the burst.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.admin import SANDBOX_API, AdminProcess
from bench.rawhttp import Connection
from bench.report import percentile, process_cpu_s, record

NODES = 50
CREATE_DELAY_MS = 200.0  # what a simulated node takes to "start" a sandbox (excluded from the latency)
STOP_DELAY_MS = 50.0
RECORDS = 100_000
BODY = {"cpus": 0.1, "memory": "128m", "auto_clear_seconds": 3600, "wait": False}  # an idle TTL, as trainers set
CONNECTIONS = 128  # the burst's client connections (bench.rawhttp: a lean client, so that the admin is measured)
LOOP = "asyncio"  # the client's loop; the admin runs in its own process on uvloop


def unavailable() -> str | None:
    """Why this part cannot run here (PostgreSQL's server programs missing), or None."""
    from rock.admin.store.localpg import _pg_bin

    try:
        _pg_bin("initdb")
    except RuntimeError as exc:
        return str(exc)
    return None


def _pg_cpu_s(pg) -> float:
    """CPU of the PostgreSQL server: its postmaster and every process under it (the backends)."""
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master or stat.parent.name == str(master):  # ppid, or the postmaster itself
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _SimAdmin(AdminProcess):
    """``rock admin start`` with ``simulated_cluster`` set and a PostgreSQL store."""

    def __init__(self, store_url: str):
        super().__init__("bwrap", prefix="rock-bench-scale-")
        self.store_url = store_url

    def start(self) -> str:
        sim = {"nodes": NODES, "create_delay_ms": CREATE_DELAY_MS, "stop_delay_ms": STOP_DELAY_MS,
               "cpus": 64, "memory_gib": 256}
        env = {**os.environ, "ROCK_SIMULATED_CLUSTER": json.dumps(sim)}
        subprocess.run([sys.executable, "-m", "rock.cli.main", "admin", "start", "--port", str(self.port),
                        "--state-dir", self.state, "--store-url", self.store_url, "--log-level", "warning"],
                       check=True, capture_output=True, timeout=120, env=env)
        self.pid = int((Path(self.state) / "admin.pid").read_text().strip())
        return self.url

    def stop(self) -> None:  # the database goes away with its records: no per-sandbox cleanup
        try:
            self._rock("admin", "stop")
        finally:
            shutil.rmtree(self.state, ignore_errors=True)


def _decisions_per_s() -> float:
    """Placement decisions (choose + reserve) per second over 50 node views, in this process."""
    from rock.worker.resources import GIB, Need, NodeInfo, NodeLoad, Resources
    from rock.cluster.placement import NodeView, Placement
    from rock.runtime.base import SandboxSpec

    views = [NodeView(NodeInfo(name=f"v{i}", ray_node_id="", host_name="", ip="", relay="", token="", backend="x",
                               capacity=Resources(cpus=64, memory_bytes=256 * GIB),
                               load=NodeLoad(reserved=Resources(), sandboxes=0, version=0, loadavg=0)))
             for i in range(NODES)]
    placement = Placement("spread", 1.0)
    need = Need.of(SandboxSpec(sandbox_id="x", image="python:3.11", cpus=0.1, memory_bytes=128 << 20))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for _ in range(100):
            node = placement.choose(need, views)
            if node is None:
                for v in views:
                    v.pending = Resources()
                continue
            node.pending = node.pending + need.resources
            n += 1
    return n / (time.perf_counter() - t0)


async def _burst(ctx, client: httpx.AsyncClient, n: int, pg, pid: int) -> tuple[list[dict], list[str]]:
    store_url = pg.url
    ids: list[str] = []
    failures: dict[str, int] = {}
    left = [n]

    host, port = str(client.base_url.host), client.base_url.port

    async def sender() -> None:
        conn = Connection(host, port)
        try:
            while left[0] > 0:
                left[0] -= 1
                try:  # no sandbox_id: the admin names it (a caller's id costs a read of the store first)
                    status, body = await conn.request("POST", SANDBOX_API + "/start", BODY)
                    if status == 200:
                        ids.append(json.loads(body)["result"]["sandbox_id"])
                        continue
                    why = f"start {status}: {json.loads(body).get('message', '')[:100]}"
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    why = f"client: {type(exc).__name__}"
                failures[why] = failures.get(why, 0) + 1
        finally:
            conn.close()

    ctx.progress(f"scale_sim: {n} sandboxes at once onto {NODES} simulated nodes")
    cpu0, wall0, mine0, pg0 = process_cpu_s(pid), time.time(), time.process_time(), _pg_cpu_s(pg)
    await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
    submitted = time.time() - wall0
    client_cpu = time.process_time() - mine0
    # Every record running (or failed) in the store: the admin places them, and writes, in the background.
    deadline = time.time() + 600
    while time.time() < deadline:
        if await _settled(store_url, ids) == len(ids):
            break
        await asyncio.sleep(0.2)
    cpu, pg_cpu = process_cpu_s(pid) - cpu0, _pg_cpu_s(pg) - pg0
    started = await _started_at(store_url, ids)
    lat = [t - wall0 - CREATE_DELAY_MS / 1e3 for t in started.values() if t is not None]
    last = max(started.values(), default=wall0) - wall0
    ctx.progress(f"scale_sim: submitted in {submitted:.1f}s, all running {last:.1f}s after the first request; "
                 f"{len(lat)}/{n} running")
    quick = " (--quick: a smaller burst)" if ctx.quick else ""
    burst = record(f"scale_sim_burst_{n}", "simulated", lat, attempts=n, nodes=NODES,
                   create_delay_ms=CREATE_DELAY_MS, submit_wall_s=round(submitted, 3), wall_s=round(last, 3),
                   target_p99_ms=5000, failures=failures,
                   note="admin-side: each record's started_at minus the burst's start minus the node delay" + quick)
    per_s = len(lat) / max(1e-9, last - CREATE_DELAY_MS / 1e3)
    placements = {"metric": "scale_sim_placements_per_s", "backend": "simulated", "n": len(lat),
                  "per_s": round(per_s, 1), "target_per_s": 2000, "decisions_per_s": round(_decisions_per_s(), 1),
                  "admin_cpu_ms_per_placement": round(cpu * 1e3 / max(1, len(lat)), 3),
                  "client_cpu_ms_per_request": round(client_cpu * 1e3 / n, 3), "nodes": NODES,
                  "postgres_cpu_ms_per_placement": round(pg_cpu * 1e3 / max(1, len(lat)), 3),
                  "admin_core_bound_per_s": round(len(lat) / cpu, 1) if cpu else None}
    return [burst, placements], ids


async def _settled(store_url: str, ids: list[str]) -> int:
    """How many of ``ids`` the store has past pending (the admin writes in the background)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(store_url) as db:
        cur = await db.execute("SELECT COUNT(*) FROM sandboxes WHERE sandbox_id = ANY(%s) AND state != 'pending'", (ids,))
        return (await cur.fetchone())[0]


async def _started_at(store_url: str, ids: list[str]) -> dict[str, float | None]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(store_url) as db:
        cur = await db.execute("SELECT sandbox_id, started_at FROM sandboxes WHERE sandbox_id = ANY(%s)", (ids,))
        return {sid: t for sid, t in await cur.fetchall()}


async def _fill(store_url: str, n: int) -> list[str]:
    """``n`` ended records (stopped, failed, deleted; a few users and images) written in bulk,
    with a history row each, as a long-running cluster accumulates them."""
    import psycopg

    from rock.admin.store import COLUMNS

    now = time.time()
    ids, rng = [], random.Random(7)
    async with await psycopg.AsyncConnection.connect(store_url) as db:
        async with db.cursor() as cur:
            async with cur.copy(f"COPY sandboxes ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for i in range(n):
                    sid = uuid.uuid4().hex
                    ids.append(sid)
                    created = now - 86400 * 3 + i
                    state = rng.choice(("stopped", "stopped", "failed", "deleted"))
                    row = {"sandbox_id": sid, "state": state, "owner": None, "namespace": f"ns{i % 5}",
                           "user_id": f"user{i % 40}", "experiment_id": f"exp{i % 200}", "cluster": None,
                           "image": f"python:3.{10 + i % 3}", "cpus": 0.1, "memory": "128m", "backend": "simulated",
                           "host_name": f"simulated-sim-{i % NODES:03d}", "host_ip": "127.0.0.1",
                           "node_id": f"sim-{i % NODES:03d}", "auto_clear_seconds": 0,
                           "spec": json.dumps({"image": f"python:3.{10 + i % 3}", "cpus": 0.1, "memory": "128m"}),
                           "failure_reason": "simulated failure" if state == "failed" else None,
                           "created_at": created, "started_at": created + 0.2, "stopped_at": created + 60,
                           "deleted_at": created + 61 if state == "deleted" else None, "last_used_at": created + 50,
                           "due_at": None, "rev": 0, "updated_at": created + 61}
                    await copy.write_row([row[c] for c in COLUMNS])
            async with cur.copy("COPY history (sandbox_id, from_state, to_state, event, message, ts) FROM STDIN") as copy:
                for i, sid in enumerate(ids):
                    created = now - 86400 * 3 + i
                    for frm, to, event in ((None, "pending", "create"), ("pending", "running", "started"),
                                           ("running", "stopped", "stop")):
                        await copy.write_row([sid, frm, to, event, None, created])
        await db.commit()
        await db.set_autocommit(True)
        # What autovacuum does to a table that grew to this size over days (the visibility map lets
        # the counts and pages be answered from the indexes alone).
        await db.execute("VACUUM ANALYZE sandboxes")
        await db.execute("VACUUM ANALYZE history")
    return ids


async def _latencies(ctx, client: httpx.AsyncClient, live: list[str], ended: list[str], total: int) -> list[dict]:
    pages = max(1, total // 100)
    rng = random.Random(11)
    user = lambda: f"user{rng.randrange(40)}"  # noqa: E731
    # kind -> (label, a path maker): each request picks one of its kind's routes at random
    routes = {
        "list": [("page", lambda: f"{SANDBOX_API}/sandboxes?page={rng.randrange(1, pages + 1)}&page_size=100"),
                 ("first page", lambda: f"{SANDBOX_API}/sandboxes?page_size=100"),
                 ("by user", lambda: f"{SANDBOX_API}/sandboxes?user_id={user()}&page_size=100")],
        "status": [("live", lambda: f"{SANDBOX_API}/get_status?sandbox_id={rng.choice(live)}"),
                   ("ended", lambda: f"{SANDBOX_API}/get_status?sandbox_id={rng.choice(ended)}&include_all_states=true"),
                   ("batch of 100", lambda: (f"{SANDBOX_API}/sandboxes/batch",  # a POST: (path, body)
                                             {"sandbox_ids": rng.sample(live, 50) + rng.sample(ended, 50)}))],
        "ui": [("table", lambda: "/ui/sandboxes"), ("table fragment", lambda: "/ui/fragments/sandboxes?page=2"),
               ("table by user", lambda: f"/ui/sandboxes?user_id={user()}"), ("overview", lambda: "/"),
               ("overview fragment", lambda: "/ui/fragments/overview"),
               ("sandbox", lambda: f"/ui/sandboxes/{rng.choice(live + ended)}")],
        "floor": [("health", lambda: "/health")],
    }
    samples: dict[str, list[float]] = {k: [] for k in routes}
    by_route: dict[str, list[float]] = {}
    errors: dict[str, int] = {k: 0 for k in routes}
    n = ctx.n(200, 1000)
    block = 20
    ctx.progress(f"scale_sim: list/status/UI latencies at {total:,} records ({n} each, blocks of {block})")
    for choices in routes.values():  # warm-up, once per route: the UI's filter menus are read on first use
        for _, path in choices:
            target = path()
            await (client.post(target[0], json=target[1]) if isinstance(target, tuple) else client.get(target))
    for _ in range(n // block):
        for kind, choices in routes.items():  # alternating blocks: the floor sees the same machine moments
            for _ in range(block):
                label, path = rng.choice(choices)
                target = path()
                t0 = time.perf_counter()
                r = await (client.post(target[0], json=target[1]) if isinstance(target, tuple) else client.get(target))
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    samples[kind].append(dt)
                    by_route.setdefault(f"{kind} {label}", []).append(dt)
                else:
                    errors[kind] += 1
    out = []
    for kind in ("list", "status", "ui"):
        routes_ms = {label[len(kind) + 1:]: {"p50_ms": round(percentile(v, 0.5) * 1e3, 2),
                                             "p99_ms": round(percentile(v, 0.99) * 1e3, 2), "n": len(v)}
                     for label, v in by_route.items() if label.startswith(kind + " ")}
        out.append(record(f"scale_sim_{kind}_ms", "simulated", samples[kind], attempts=len(samples[kind]) + errors[kind],
                          floor_s=samples["floor"], records=total, target_p99_ms=100, routes=routes_ms))
        ctx.progress(f"scale_sim_{kind}_ms: " + ", ".join(f"{k} p50 {v['p50_ms']} / p99 {v['p99_ms']} ms"
                                                        for k, v in routes_ms.items()))
    return out


async def run(ctx) -> list[dict]:
    from rock.admin.store.localpg import Postgres

    burst_n = ctx.n(4000, 16000)
    root = Path(tempfile.mkdtemp(prefix="rock-bench-pg-"))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg = Postgres(root, port).start()
    admin = None
    records: list[dict] = []
    try:
        admin = _SimAdmin(pg.url)
        url = admin.start()
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
            await client.post(SANDBOX_API + "/start", json={**BODY, "wait": True})  # warm-up: imports, connections
            await asyncio.sleep(1)
            rss0 = _proc_rss(admin.pid)
            found, live = await _burst(ctx, client, burst_n, pg, admin.pid)
            records += found
            await asyncio.sleep(2)  # the last writes land
            rss1 = _proc_rss(admin.pid)
            rest_s = ctx.n(5, 20)
            cpu0 = process_cpu_s(admin.pid)
            await asyncio.sleep(rest_s)
            cpu_rest = process_cpu_s(admin.pid) - cpu0
            n_live = len(live)
            records.append({"metric": "scale_sim_admin_per_live", "backend": "simulated", "n": n_live,
                            "rss_before_mb": round(rss0 / 1e6, 1), "rss_after_mb": round(rss1 / 1e6, 1),
                            "kb_per_live_sandbox": round((rss1 - rss0) / 1e3 / max(1, n_live), 2),
                            "cpu_percent_at_rest": round(100 * cpu_rest / rest_s, 2),
                            "cpu_us_per_live_sandbox_per_s": round(1e6 * cpu_rest / rest_s / max(1, n_live), 3),
                            "admin_cpu_ms_per_placement": found[1]["admin_cpu_ms_per_placement"]})
            ctx.progress(f"scale_sim: writing {RECORDS - n_live - 1:,} ended records to the store")
            ended = await _fill(pg.url, RECORDS - n_live - 1)
            records += await _latencies(ctx, client, live, ended, RECORDS)
    finally:
        if admin is not None:
            admin.stop()
        pg.stop()
    return records
