"""What the UI pages show: live sandboxes from the admin's memory, the table, counts and ended
sandboxes from the store (indexed queries), a sandbox's state history (one more)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import Field

from rock.admin.context import Ctx
from rock.admin.sandboxes.listing import SandboxQuery
from rock.admin.store import TRANSITIONS, SandboxRecord

STATES = list(TRANSITIONS)
STATS_TIMEOUT_S = 0.5


class TableQuery(SandboxQuery):
    """The sandboxes table's filters (all exact matches) and page; empty fields mean 'any'."""

    page_size: int = Field(default=50, ge=1, le=500)

    @classmethod
    def of(cls, params) -> "TableQuery":
        return cls.model_validate({k: v for k, v in params.items() if v != ""})


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


def clock(ts: float | None) -> str:
    """A wall-clock time in UTC, to the second (what the history and the command list show)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def size(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def idle_left(r: SandboxRecord, now: float) -> float | None:
    if r.state != "running" or not r.auto_clear_seconds:
        return None
    return r.last_used_at + r.auto_clear_seconds - now


@dataclass
class Sample:
    at: float
    cpu_seconds: float | None


class StatsSampler:
    """Live cpu/memory/pids of running sandboxes; cpu% from the previous sample of the same sandbox."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self._last: dict[str, Sample] = {}

    async def one(self, sandbox_id: str) -> dict | None:
        try:
            stats = await asyncio.wait_for(self.ctx.worker.stats(sandbox_id), STATS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a sandbox that just stopped has no stats; the page says "-"
            self._last.pop(sandbox_id, None)
            return None
        now = time.monotonic()
        prev = self._last.get(sandbox_id)
        self._last[sandbox_id] = Sample(now, stats.cpu_seconds)
        cpu_pct = None
        if prev and prev.cpu_seconds is not None and stats.cpu_seconds is not None and now > prev.at:
            cpu_pct = round(100 * (stats.cpu_seconds - prev.cpu_seconds) / (now - prev.at), 1)
        return {"cpu_percent": cpu_pct, "cpu_seconds": stats.cpu_seconds, "memory_bytes": stats.memory_bytes,
                "memory": size(stats.memory_bytes), "memory_limit": size(stats.memory_limit_bytes),
                "pids": stats.pids, "pids_limit": stats.pids_limit}

    async def many(self, records: list[SandboxRecord]) -> dict[str, dict]:
        running = [r.sandbox_id for r in records if r.state == "running"]
        held = self.ctx.sandboxes.records  # what was sampled and ended since (not a set of every live record)
        for gone in [sid for sid in self._last if sid not in held]:
            self._last.pop(gone, None)
        results = await asyncio.gather(*(self.one(sid) for sid in running))
        return {sid: s for sid, s in zip(running, results) if s is not None}


def row(r: SandboxRecord, now: float, hosted: dict, stats: dict) -> dict:
    return {"id": r.sandbox_id, "state": r.state, "backend": r.backend or "-", "image": r.image or "-",
            "user_id": r.user_id or "-", "experiment_id": r.experiment_id or "-", "namespace": r.namespace or "-",
            "age": ago(now - r.created_at), "idle_left": ago(idle_left(r, now)),
            "cpus": r.cpus if r.cpus is not None else "-", "memory": r.memory or "-",
            "envs": len(hosted.get(r.sandbox_id, [])), "stats": stats.get(r.sandbox_id),
            "failure_reason": r.failure_reason}


class FilterOptions:
    """The table's filter choices (the distinct images, users, experiments, namespaces): four scans
    of the whole table, which at 100,000 records cost more than the rest of the page. Read once per
    namespace, then again in the background at most every ``ttl`` seconds while the last read is
    served: a new value shows up in the menus within that time (a filter typed into the URL works
    at once, and its value is always offered)."""

    FIELDS = ("image", "user_id", "experiment_id", "namespace")

    def __init__(self, ctx: Ctx, ttl: float = 5.0):
        self.ctx, self.ttl = ctx, ttl
        self._read_at: dict = {}
        self._values: dict = {}
        self._reading: dict = {}

    async def _read(self, owner) -> dict[str, list[str]]:
        store = self.ctx.sandboxes.store
        values = {name: await store.distinct(name, owner) for name in self.FIELDS}
        self._values[owner], self._read_at[owner] = values, time.monotonic()
        return values

    async def get(self, owner, chosen: dict[str, str]) -> dict[str, list[str]]:
        values = self._values.get(owner)
        if values is None:
            values = await self._read(owner)
        elif time.monotonic() - self._read_at[owner] > self.ttl and owner not in self._reading:
            task = self._reading[owner] = asyncio.ensure_future(self._read(owner))
            task.add_done_callback(lambda _: self._reading.pop(owner, None))
        return {name: sorted({*values[name], chosen[name]}) if chosen.get(name) else values[name]
                for name in self.FIELDS}


async def table(ctx: Ctx, app, owner: str | None, q: TableQuery, sampler: StatsSampler,
                choices: FilterOptions) -> dict:
    svc = ctx.sandboxes
    filters = q.labels()
    shown, total = await svc.held.page(owner, filters, q.state, True, (q.page - 1) * q.page_size, q.page_size)
    pages = max(1, -(-total // q.page_size))
    page = min(q.page, pages)
    if page != q.page:  # past the end: the last page  (newest first: what an operator looks for)
        shown, total = await svc.held.page(owner, filters, q.state, True, (page - 1) * q.page_size, q.page_size)
    now = time.time()
    hosted = ctx.envs.envs_by_sandbox()
    stats = await sampler.many(shown)
    options = await choices.get(owner, q.filters())
    return {"rows": [row(r, now, hosted, stats) for r in shown], "total": total, "page": page, "pages": pages,
            "query": q, "filters": q.filters(), "options": options, "states": STATES}


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


async def overview(ctx: Ctx, app, owner: str | None, request_rate: float | None) -> dict:
    counts = await ctx.sandboxes.held.counts(owner)
    backends = sorted({c["backend"] or ctx.worker.backend_name for c in counts} | {ctx.worker.backend_name})
    by_state = {s: {b: 0 for b in backends} for s in STATES}
    for c in counts:
        by_state[c["state"]][c["backend"] or ctx.worker.backend_name] += c["n"]
    running = sum(by_state["running"].values())
    hosted = ctx.envs.envs_by_sandbox()
    env_hosts = [{"sandbox_id": sid, "envs": len(envs), "env_ids": sorted({e["env_id"] for e in envs})}
                 for sid, envs in sorted(hosted.items()) if ctx.sandboxes.held.holds(sid, owner)]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    node = {"name": socket.gethostname(), "backend": ctx.worker.backend_name, "cpus": os.cpu_count(),
            "memory": size(_meminfo_total()), "load": " ".join(f"{x:.2f}" for x in load) if load else "-",
            "running": running, "role": ctx.settings.role, "uptime": ago(time.time() - ctx.started_at)}
    return {"nodes": [node], "backends": backends, "by_state": by_state, "total": sum(c["n"] for c in counts),
            "pools": ctx.worker.pool.summary(), "env_hosts": env_hosts, "request_rate": request_rate,
            "auth": ctx.auth.enabled, "owner": owner}


async def detail(ctx: Ctx, app, record: SandboxRecord) -> dict:
    sid = record.sandbox_id
    await ctx.sandboxes.held.written(sid)
    history = await ctx.sandboxes.store.history(sid)
    sessions, session_error = [], None
    if record.state == "running":
        try:
            sessions = await asyncio.wait_for(ctx.worker.agent(sid).list_sessions(), 2)
        except Exception as exc:  # noqa: BLE001 - shown on the page instead of the list
            session_error = f"could not list sessions: {type(exc).__name__}"
    now = time.time()
    return {"r": record, "created": clock(record.created_at), "started": clock(record.started_at),
            "stopped": clock(record.stopped_at), "age": ago(now - record.created_at),
            "idle_left": ago(idle_left(record, now)),
            "history": history, "sessions": sessions,
            "session_error": session_error, "commands": ctx.sandboxes.commands.recent(sid),
            "envs": ctx.envs.envs_by_sandbox().get(sid, [])}
