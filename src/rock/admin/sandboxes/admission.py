"""Admission: whether a start may happen, decided at once, before anything is made.

Every door that starts a sandbox (ROCK's start, E2B's create, GEM make and vector make, gym
sessions, training instances, agentic rollouts through the SDK, restores from snapshots, forks,
restarts) reaches ``Sandboxes.start``, ``Sandboxes.fork`` or the restart in
``rock.admin.sandboxes.lifecycle``; each of those calls ``Admission.admit`` once, and nothing
else decides. A start reserves what it really costs this node (its cpus, its memory limit plus
what its agent takes beyond it; env hosts run inside the sandbox, under its limit) against what
the node may promise (``node_cpus``/``node_memory``, or its cpus and memory times
``cpu_overcommit``/``memory_overcommit``: a limit caps, it does not reserve), and against its
namespace's quota (``Settings.quotas``: running sandboxes, memory, cpus, creates per minute); env hosts and snapshots are counted where they are made
(``check_env_hosts``; ``check_snapshots``: their count and what they take on disk). A reservation is given back when the record leaves
the live states (stopped, failed, deleted, lost: the service's state events).

A refusal names the limit: ``CapacityExceeded`` (503, the node) or ``QuotaExceeded`` (429, the
namespace; a rate's carries ``retry_after``). On a cluster, placement reserves per node
(``rock.cluster.placement``); the namespace's quotas are still this module's.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

from rock.admin.store import LIVE
from rock.config import Settings, TenantQuota
from rock.errors import CapacityExceeded, QuotaExceeded, Refused
from rock.worker.resources import GIB
from rock.worker.sizes import parse_memory

ANY = "*"  # the quota of every namespace without its own


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


class _Tenant:
    __slots__ = ("cpus", "filled_at", "memory", "sandboxes", "tokens")

    def __init__(self, burst: float):
        self.sandboxes, self.cpus, self.memory = 0, 0.0, 0
        self.tokens, self.filled_at = burst, time.monotonic()


class Admission:
    """One node's ledger of what its live sandboxes reserve, and each namespace's share of it."""

    def __init__(self, settings: Settings, worker):
        self.settings = settings
        self.enabled = settings.admission
        self.default_memory = parse_memory(settings.default_memory) or 0
        self.overhead = parse_memory(settings.sandbox_overhead_memory) or 0
        # A cluster's placement admits per node; one node's own worker knows its machine.
        self.node_cpus, self.node_memory = self._limits(settings, worker)
        self.cpus, self.memory = 0.0, 0
        self._held: dict[str, tuple[str, float, int]] = {}  # sandbox_id -> (tenant, cpus, memory)
        self._tenants: dict[str, _Tenant] = {}
        self.refused: Counter = Counter()  # (limit, status) -> refusals
        self._lock = threading.Lock()  # admit is sync; the lock keeps a check and its take one step

    @staticmethod
    def _limits(settings: Settings, worker) -> tuple[float | None, int | None]:
        if getattr(worker, "backend_name", "") == "cluster" or not hasattr(worker, "capacity"):
            return None, None
        cap = worker.capacity()
        cpus = settings.node_cpus or cap.cpus * max(settings.overcommit, settings.cpu_overcommit)
        memory = parse_memory(settings.node_memory) or int(cap.memory_bytes * max(settings.overcommit,
                                                                                 settings.memory_overcommit))
        return cpus, memory

    # -- what a start costs ------------------------------------------------------------------

    def cost(self, cpus: float | None, memory_bytes: int | None) -> tuple[float, int]:
        """(cpus, memory bytes) a sandbox with these limits takes from the node: its limits (the
        defaults where unset) and its agent beyond them."""
        return (cpus or self.settings.default_cpus), (memory_bytes or self.default_memory) + self.overhead

    def quota(self, tenant: str | None) -> TenantQuota | None:
        q = self.settings.quotas
        return q.get(tenant or "") or q.get(ANY) if q else None

    # -- admit and release -------------------------------------------------------------------

    def admit(self, tenant: str | None, claims: list[tuple[str, float, int]], rate: bool = True) -> None:
        """Reserve ``claims`` ((sandbox_id, cpus, memory bytes), as ``cost`` gives) for ``tenant``,
        all or none; raise QuotaExceeded or CapacityExceeded naming the limit. A sandbox id that
        holds a reservation already is not counted twice. ``rate``: the starts count against the
        namespace's create rate (a restart of a stopped sandbox does too)."""
        if not self.enabled:
            return
        key = tenant or ""
        with self._lock:
            claims = [c for c in claims if c[0] not in self._held]
            if not claims:
                return
            cpus = sum(c[1] for c in claims)
            memory = sum(c[2] for c in claims)
            t = self._tenants.get(key)
            if t is None:
                t = self._tenants[key] = _Tenant(self._burst(self.quota(tenant)))
            q = self.quota(tenant)
            if q is not None:
                self._check_quota(tenant, q, t, len(claims), cpus, memory, rate)
            self._check_node(cpus, memory, len(claims))
            if q is not None and rate and q.creates_per_minute:
                t.tokens -= len(claims)
            for sid, c, m in claims:
                self._held[sid] = (key, c, m)
            t.sandboxes += len(claims)
            t.cpus += cpus
            t.memory += memory
            self.cpus += cpus
            self.memory += memory

    def count(self, exc: Refused) -> None:
        """Count a refusal by its limit and status (``rock_admission_refused``), this ledger's or
        a cluster's placement's."""
        self.refused[(exc.limit, exc.status_code)] += 1

    def _refuse(self, exc: Refused):
        self.count(exc)
        raise exc

    @staticmethod
    def _burst(q: TenantQuota | None) -> float:
        if q is None or not q.creates_per_minute:
            return 0.0
        return float(q.create_burst or max(1, math.ceil(q.creates_per_minute / 60)))

    def _check_quota(self, tenant, q: TenantQuota, t: _Tenant, n: int, cpus: float, memory: int, rate: bool) -> None:
        who = f"namespace {tenant!r}" if tenant else "this admin's one principal"
        if rate and q.creates_per_minute:
            now = time.monotonic()
            per_s = q.creates_per_minute / 60
            t.tokens = min(self._burst(q), t.tokens + (now - t.filled_at) * per_s)
            t.filled_at = now
            if t.tokens < n:
                wait = max(1, math.ceil((n - t.tokens) / per_s))
                self._refuse(QuotaExceeded(f"{who} is past its create rate of {q.creates_per_minute:g} sandboxes per "
                                           f"minute (burst {self._burst(q):g}); retry in {wait} s",
                                           limit="creates_per_minute", retry_after=wait))
        if q.sandboxes is not None and t.sandboxes + n > q.sandboxes:
            self._refuse(QuotaExceeded(f"{who} is at its quota of {q.sandboxes} running sandboxes ({t.sandboxes} run; "
                                       f"this asks for {n} more): stop one first", limit="sandboxes"))
        most = parse_memory(q.memory) if q.memory else None
        if most is not None and t.memory + memory > most:
            self._refuse(QuotaExceeded(f"{who} is at its memory quota of {_gib(most)} ({_gib(t.memory)} held; this "
                                       f"asks for {_gib(memory)}, its agent's included)", limit="memory"))
        if q.cpus is not None and t.cpus + cpus > q.cpus + 1e-9:
            self._refuse(QuotaExceeded(f"{who} is at its quota of {q.cpus:g} cpus ({t.cpus:g} held; this asks for "
                                       f"{cpus:g})", limit="cpus"))

    def _check_node(self, cpus: float, memory: int, n: int) -> None:
        s = self.settings
        cpu_over = "" if s.node_cpus else f" ({max(s.overcommit, s.cpu_overcommit):g} per core)"
        memory_over = "" if s.node_memory else f" ({max(s.overcommit, s.memory_overcommit):g} times its own)"
        if self.node_cpus is not None and self.cpus + cpus > self.node_cpus + 1e-9:
            self._refuse(CapacityExceeded(
                f"this node is full: its {self.node_cpus:g} cpus{cpu_over} are promised to running sandboxes "
                f"({self.cpus:g} held; {n} more sandbox(es) ask for {cpus:g}); stop one or try later",
                limit="node_cpus"))
        if self.node_memory is not None and self.memory + memory > self.node_memory:
            self._refuse(CapacityExceeded(
                f"this node is full: its {_gib(self.node_memory)} memory{memory_over} is promised to running "
                f"sandboxes ({_gib(self.memory)} held; {n} more sandbox(es) ask for {_gib(memory)}, agents "
                "included); stop one or try later", limit="node_memory"))

    def hold(self, tenant: str | None, sandbox_id: str, cpus: float, memory: int) -> None:
        """Count a sandbox that runs already (found again after a restart): never refused."""
        with self._lock:
            if sandbox_id in self._held:
                return
            key = tenant or ""
            t = self._tenants.get(key) or self._tenants.setdefault(key, _Tenant(self._burst(self.quota(tenant))))
            self._held[sandbox_id] = (key, cpus, memory)
            t.sandboxes, t.cpus, t.memory = t.sandboxes + 1, t.cpus + cpus, t.memory + memory
            self.cpus += cpus
            self.memory += memory

    def release(self, sandbox_id: str) -> None:
        """Give back what ``sandbox_id`` reserved (nothing if it holds nothing)."""
        with self._lock:
            held = self._held.pop(sandbox_id, None)
            if held is None:
                return
            key, cpus, memory = held
            t = self._tenants[key]
            t.sandboxes, t.cpus, t.memory = t.sandboxes - 1, t.cpus - cpus, t.memory - memory
            self.cpus -= cpus
            self.memory -= memory

    def on_event(self, kind: str, record, info: dict) -> None:
        """The service's state events: a record that leaves the live states gives back its share."""
        if kind == "state" and record.state not in LIVE:
            self.release(record.sandbox_id)

    # -- env hosts and snapshots: counted where they are made ---------------------------------

    def check_env_hosts(self, tenant: str | None, have: int, more: int = 1) -> None:
        """QuotaExceeded when ``tenant`` holding ``have`` env hosts may not add ``more``."""
        q = self.quota(tenant)
        if self.enabled and q is not None and q.env_hosts is not None and have + more > q.env_hosts:
            who = f"namespace {tenant!r}" if tenant else "this admin's one principal"
            self._refuse(QuotaExceeded(f"{who} is at its quota of {q.env_hosts} env hosts ({have} open; this asks "
                                       f"for {more} more): close one first", limit="env_hosts"))

    def check_snapshots(self, tenant: str | None, have: int, have_bytes: int = 0, new_bytes: int | None = None) -> None:
        """QuotaExceeded when ``tenant``, keeping ``have`` snapshots of ``have_bytes`` on disk, may
        not keep another: before it is taken (``new_bytes`` None: its size is not known yet, so
        only a namespace with no room left is refused) and once it is (``new_bytes``: what it
        takes on disk; the caller deletes it when refused)."""
        q = self.quota(tenant)
        if not self.enabled or q is None:
            return
        who = f"namespace {tenant!r}" if tenant else "this admin's one principal"
        if q.snapshots is not None and have + 1 > q.snapshots:
            self._refuse(QuotaExceeded(f"{who} is at its quota of {q.snapshots} snapshots: delete one first",
                                       limit="snapshots"))
        most = parse_memory(q.snapshot_bytes) if q.snapshot_bytes else None
        if most is None:
            return
        if new_bytes is None and have_bytes >= most:
            self._refuse(QuotaExceeded(f"{who} is at its quota of {_gib(most)} of snapshots on disk "
                                       f"({_gib(have_bytes)} kept): delete one first", limit="snapshot_bytes"))
        if new_bytes is not None and have_bytes + new_bytes > most:
            self._refuse(QuotaExceeded(f"{who} would pass its quota of {_gib(most)} of snapshots on disk: this "
                                       f"snapshot takes {_gib(new_bytes)} beside the {_gib(have_bytes)} kept, so it "
                                       "was deleted; delete one first or snapshot less", limit="snapshot_bytes"))

    # -- what a tenant and the operator see -------------------------------------------------

    def usage(self, tenant: str | None, env_hosts: int, snapshots: int, snapshot_bytes: int = 0) -> dict:
        """The namespace's usage beside its limits (None: no limit), and the node's headroom."""
        t = self._tenants.get(tenant or "")
        q = self.quota(tenant) or TenantQuota()
        return {
            "namespace": tenant,
            "usage": {"sandboxes": t.sandboxes if t else 0, "cpus": t.cpus if t else 0.0,
                      "memory_bytes": t.memory if t else 0, "env_hosts": env_hosts, "snapshots": snapshots,
                      "snapshot_bytes": snapshot_bytes},
            "limits": {"sandboxes": q.sandboxes, "cpus": q.cpus,
                       "memory_bytes": parse_memory(q.memory) if q.memory else None, "env_hosts": q.env_hosts,
                       "snapshots": q.snapshots,
                       "snapshot_bytes": parse_memory(q.snapshot_bytes) if q.snapshot_bytes else None,
                       "creates_per_minute": q.creates_per_minute,
                       "create_burst": self._burst(q) or None},
            "node": {"admission": self.enabled, "cpus": self.node_cpus, "memory_bytes": self.node_memory,
                     "cpus_reserved": self.cpus, "memory_reserved_bytes": self.memory},
        }

    def families(self, scraper: str | None = None, snapshots: tuple[int, int] | None = None):
        """Prometheus families: the node's reservations, each namespace's, refusals by limit.
        ``scraper``: the namespace of a scrape with tokens on, which sees its own usage only.
        ``snapshots``: the scraper's namespace's snapshots kept and the bytes they take on disk."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        g = GaugeMetricFamily("rock_admission_reserved", "What live sandboxes reserve on this node, by resource "
                              "(cpus, memory_bytes) and the node's limit (overcommit included)",
                              labels=["resource", "of"])
        g.add_metric(["cpus", "reserved"], self.cpus)
        g.add_metric(["memory_bytes", "reserved"], self.memory)
        if self.node_cpus is not None:
            g.add_metric(["cpus", "limit"], self.node_cpus)
            g.add_metric(["memory_bytes", "limit"], self.node_memory)
        yield g
        g = GaugeMetricFamily("rock_tenant_usage", "Each namespace's running sandboxes, cpus and memory (and the "
                              "scraper's snapshots and the bytes they take on disk)", labels=["namespace", "resource"])
        if snapshots is not None:
            g.add_metric([scraper or "", "snapshots"], snapshots[0])
            g.add_metric([scraper or "", "snapshot_bytes"], snapshots[1])
        with self._lock:
            tenants = list(self._tenants.items())
        for key, t in sorted(tenants):
            if scraper is not None and key != scraper:
                continue
            g.add_metric([key, "sandboxes"], t.sandboxes)
            g.add_metric([key, "cpus"], t.cpus)
            g.add_metric([key, "memory_bytes"], t.memory)
        yield g
        c = CounterMetricFamily("rock_admission_refused", "Starts, env hosts and snapshots refused, by the limit hit "
                                "and the status answered", labels=["limit", "status"])
        for (limit, status), n in sorted(self.refused.items()):
            c.add_metric([limit, str(status)], n)
        yield c
