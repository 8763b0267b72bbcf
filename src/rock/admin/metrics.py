"""``GET /metrics`` in Prometheus' text format, through prometheus-client.

Every label value comes from a small fixed set (route templates, HTTP methods and codes, states,
backends, error classes), never from a sandbox id, a path or a message: a scrape stays the same
size however many sandboxes come and go. Gauges (sandboxes by state) are read from memory at
scrape time; counters and histograms are fed by the request middleware and by the sandbox
service's events. With tokens configured, a scrape needs one like any other request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from bisect import bisect_left
from collections import deque

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from rock.admin.context import Ctx
from rock.admin.store import TRANSITIONS
from rock.errors import RockError

_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60)
_START_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 180)
RATE_WINDOW_S = 60
_ROLLOUT_BUCKETS = (.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_HARNESSES = {"none", "ours", "mini-swe-agent", "claude-code", "codex", "qwen-code", "opencode"}


class Metrics:
    def __init__(self, ctx: Ctx, app: FastAPI, env_calls: Mapping[str, str] | None = None):
        self.ctx, self.app = ctx, app
        # One registry per app: several admins may live in one process (tests, embedding).
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = _RequestTimes(env_calls or {})
        self.starts = Histogram("rock_sandbox_start_duration_seconds",
                                "Sandbox start time by phase: create (the worker's launch or pool take until the "
                                "agent answers) and total (the record's creation until running)",
                                ["backend", "phase", "source"], buckets=_START_BUCKETS, registry=self.registry)
        self.failures = Counter("rock_sandbox_failures", "Sandboxes that failed, by reason (an error class, "
                                "'timeout', 'internal' or 'lost')", ["backend", "reason"], registry=self.registry)
        self.pool = Counter("rock_warm_pool_requests", "Sandbox starts served from a warm pool (hit) or "
                            "started cold (miss)", ["backend", "result"], registry=self.registry)
        # pause, resume, snapshots and fork (rock.admin.sandboxes.snapshots's events)
        self.pauses = Histogram("rock_sandbox_pause_duration_seconds", "Time to pause or resume a sandbox, by "
                                "operation (pause, resume)", ["backend", "op"], buckets=_LATENCY_BUCKETS,
                                registry=self.registry)
        self.snapshots = Histogram("rock_snapshot_duration_seconds", "Time to take a snapshot, by mode (filesystem, "
                                   "full)", ["backend", "mode"], buckets=_START_BUCKETS, registry=self.registry)
        self.forks = Histogram("rock_fork_duration_seconds", "Time from a fork's snapshot until every child is up "
                               "(or failed), by mode", ["backend", "mode"], buckets=_START_BUCKETS,
                               registry=self.registry)
        self.restores = Histogram("rock_restore_duration_seconds", "Time to roll a sandbox back to a snapshot in "
                                  "place, by the snapshot's mode", ["backend", "mode"], buckets=_START_BUCKETS,
                                  registry=self.registry)
        self.fork_children = Counter("rock_fork_children", "Sandboxes started by forks (children that came up), "
                                     "by mode", ["backend", "mode"], registry=self.registry)
        self.phases = _PhaseTimes()  # rock_rollout_phase_duration_seconds, per namespace: each scraper its own
        self.counts: list[dict] = []  # records per state and backend, read from the store at each scrape
        self.scraper: str | None = None  # the namespace of the scrape being answered (tokens on): its own series only
        self.snapshot_usage: tuple[int, int] | None = None  # the scraper's snapshots: (count, bytes on disk)
        self.registry.register(_Snapshot(self))
        self._window: deque[tuple[int, int]] = deque(maxlen=RATE_WINDOW_S + 1)
        self._second, self._in_second = 0, 0
        ctx.sandboxes.events.subscribe(self._on_event)

    # -- feeding -----------------------------------------------------------------------------

    def on_rollout(self, rollout: dict, owner: str | None = None) -> None:
        """A recorded rollout's phases (``rock.admin.rollouts``' summary of it) into the phase histogram of the job's
        namespace ``owner``."""
        from rock.admin.rollouts.summary import METRIC_PHASES

        harness = rollout.get("harness") if rollout.get("harness") in _HARNESSES else "other"  # bounded labels
        for key in METRIC_PHASES:
            ms = rollout["timings"].get(key)
            if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0:
                self.phases.observe(owner, (harness, key.removesuffix("_ms")), ms / 1000)

    def observe(self, method: str, route: str, status: int, seconds: float, began: float) -> None:
        self.requests.observe((method if method in _METHODS else "other", route, status), seconds)
        second = int(began)
        if second != self._second:
            self._window.append((self._second, self._in_second))
            self._second, self._in_second = second, 0
        self._in_second += 1

    def request_rate(self) -> float:
        """Requests per second over the last minute (whole seconds, the current one excluded)."""
        now = int(time.perf_counter())  # the clock the middleware stamps requests with
        done = sum(n for s, n in self._window if now - RATE_WINDOW_S <= s < now)
        if self._second < now and self._second >= now - RATE_WINDOW_S:
            done += self._in_second
        return done / RATE_WINDOW_S

    def _on_event(self, kind: str, record, info: dict) -> None:
        backend = record.backend or self.ctx.worker.backend_name
        if kind == "started":
            source = "pool" if info.get("warm") else "cold"
            self.starts.labels(backend, "create", source).observe(info["create_s"])
            if record.started_at is not None:
                self.starts.labels(backend, "total", source).observe(max(0.0, record.started_at - record.created_at))
            self.pool.labels(backend, "hit" if info.get("warm") else "miss").inc()
        elif kind == "start_failed":
            self.failures.labels(backend, info.get("reason_kind") or "internal").inc()
        elif kind == "state" and info.get("event") == "lost":
            self.failures.labels(backend, "lost").inc()
        elif kind in ("paused", "resumed"):
            self.pauses.labels(backend, "pause" if kind == "paused" else "resume").observe(info["seconds"])
        elif kind == "snapshot":
            self.snapshots.labels(backend, info["mode"]).observe(info["seconds"])
        elif kind == "restored":
            self.restores.labels(backend, info["mode"]).observe(info["seconds"])
        elif kind == "forked":
            self.forks.labels(backend, info["mode"]).observe(info["seconds"])
            self.fork_children.labels(backend, info["mode"]).inc(info["children"])

    # -- serving -----------------------------------------------------------------------------

    def router(self) -> APIRouter:
        api = APIRouter()

        @api.get("/metrics", tags=["metrics"], response_class=Response, responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition format"},
            401: {"description": "tokens are configured and the request carries none that is known"}})
        async def metrics(request: Request):
            """Counters, histograms and gauges of this admin (Prometheus text format)."""
            # With tokens configured, a scrape needs one like any request, and shows per-namespace
            # series of its own namespace only (another's name is never shown to it).
            scraper = self.ctx.owner(request)
            self.counts = await self.ctx.sandboxes.held.counts()  # ended sandboxes are counted in the store
            snapshots = await self._snapshot_usage(scraper)
            # Set with no await before the (synchronous) render: a concurrent scrape cannot swap it in between.
            self.scraper, self.snapshot_usage = scraper, snapshots
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return api

    async def _snapshot_usage(self, owner: str | None) -> tuple[int, int] | None:
        """The namespace's snapshots kept and the bytes they take on disk (None: unknown now, a
        cluster's node that does not answer; the rest of the scrape still answers)."""
        try:
            kept = await self.ctx.sandboxes.snapshots(owner)
        except RockError:
            return None
        return len(kept), sum(s.size_bytes or 0 for s in kept)


class _RequestTimes:
    """Request latencies by (method, route, status), kept as plain bucket counts.

    prometheus-client's own Histogram takes locks per update (1.1 us an observation here, plus
    ~0.5 us for its labels() lookup); this is a bisect and two additions (0.1 us), turned into the
    same histogram family at scrape time. The whole middleware adds ~7 us a request on this VM,
    most of it the extra coroutine layers ASGI needs to see the status."""

    def __init__(self, env_calls: Mapping[str, str]) -> None:
        self.series: dict[tuple, list] = {}  # key -> [counts per bucket (+Inf last), sum]
        self.env_calls = env_calls  # route template -> env call kind (the doors' declarations)

    def observe(self, key: tuple, seconds: float) -> None:
        entry = self.series.get(key)
        if entry is None:
            entry = self.series[key] = [[0] * (len(_LATENCY_BUCKETS) + 1), 0.0]
        entry[0][bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        entry[1] += seconds

    def families(self):
        h = HistogramMetricFamily("rock_http_request_duration_seconds", "HTTP request latency by route template",
                                  labels=["method", "route", "status"])
        env = CounterMetricFamily("rock_env_steps", "Env calls answered successfully, by kind (a vector step "
                                  "counts once)", labels=["kind"])
        env_counts = dict.fromkeys(self.env_calls.values(), 0)
        for (method, route, status), (counts, total) in list(self.series.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*_LATENCY_BUCKETS, float("inf")), counts):
                cumulative += n
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            h.add_metric([method, route, str(status)], buckets, total)
            if status < 400 and route in self.env_calls:
                env_counts[self.env_calls[route]] += cumulative
        yield h
        for kind, n in env_counts.items():
            env.add_metric([kind], n)
        yield env


class _PhaseTimes:
    """Rollout phase durations by namespace, harness and phase, as bucket counts; a scrape with tokens on sees its
    own namespace's rollouts only (without tokens, every rollout), as one histogram by harness and phase."""

    def __init__(self) -> None:
        self.series: dict[tuple, list] = {}  # (namespace, harness, phase) -> [counts per bucket (+Inf last), sum]

    def observe(self, owner: str | None, key: tuple[str, str], seconds: float) -> None:
        entry = self.series.setdefault((owner, *key), [[0] * (len(_ROLLOUT_BUCKETS) + 1), 0.0])
        entry[0][bisect_left(_ROLLOUT_BUCKETS, seconds)] += 1
        entry[1] += seconds

    def family(self, scraper: str | None) -> HistogramMetricFamily:
        merged: dict[tuple, list] = {}
        for (owner, harness, phase), (counts, total) in list(self.series.items()):
            if scraper is not None and owner != scraper:
                continue
            into = merged.setdefault((harness, phase), [[0] * len(counts), 0.0])
            into[0] = [a + b for a, b in zip(into[0], counts)]
            into[1] += total
        h = HistogramMetricFamily("rock_rollout_phase_duration_seconds", "Time per phase of the rollouts job runners "
                                  "recorded (queue, image, agent_setup, harness_install, agent, diff, verify_wait, "
                                  "verifier_start, tests, grading ...), by harness", labels=["harness", "phase"])
        for (harness, phase), (counts, total) in sorted(merged.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*_ROLLOUT_BUCKETS, float("inf")), counts):
                cumulative += n
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            h.add_metric([harness, phase], buckets, total)
        return h


class _Snapshot:
    """Gauges read from memory at scrape time: sandboxes by state and backend, warm pools, envs."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self):
        return []

    def collect(self):
        yield from self.m.requests.families()
        yield self.m.phases.family(self.m.scraper)
        ctx = self.m.ctx
        here = ctx.worker.backend_name
        counts = {(state, here): 0 for state in TRANSITIONS}
        for c in self.m.counts:
            key = (c["state"], c["backend"] or here)
            counts[key] = counts.get(key, 0) + c["n"]
        g = GaugeMetricFamily("rock_sandboxes", "Sandbox records by state and backend", labels=["state", "backend"])
        for (state, backend), n in sorted(counts.items()):
            g.add_metric([state, backend], n)
        yield g
        yield GaugeMetricFamily("rock_sandboxes_paused", "Sandboxes paused now (their processes frozen in memory)",
                                value=sum(r.state == "paused" for r in list(ctx.sandboxes.records.values())))
        pool = ctx.worker.pool
        g = GaugeMetricFamily("rock_warm_pool_ready", "Sandboxes waiting in warm pools", labels=["backend"])
        g.add_metric([here], pool.size())
        yield g
        hosted = ctx.envs.envs_by_sandbox() if ctx.envs is not None else {}
        yield GaugeMetricFamily("rock_env_sandboxes", "Sandboxes that host envs", value=len(hosted))
        yield GaugeMetricFamily("rock_envs_hosted", "Env instances hosted", value=sum(map(len, hosted.values())))
        yield from ctx.sandboxes.admission.families(self.m.scraper, self.m.snapshot_usage)


class MetricsMiddleware:
    """Times every HTTP request, the ones answered at the ASGI door included (added outermost)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # a request that dies before answering counts as a server error
        t0 = time.perf_counter()

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(scope["method"], route_label(scope), status,
                                 time.perf_counter() - t0, t0)


def route_label(scope) -> str:
    """The route's template with its router prefix (``.../sandboxes/{sandbox_id}/history``), never
    the raw path. Newer FastAPI keeps an included router's prefix out of the route object, so
    the prefix is what the real path has in front of the route's own part. (The fast routes of
    rock.admin.doors never come here: the door times them under their templates.)"""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if template is None:
        return "unmatched"
    params = scope.get("path_params")
    own = template.format(**params) if params else template
    path = scope["path"]
    return path[:len(path) - len(own)] + template if path.endswith(own) else template


def install(app: FastAPI, ctx: Ctx, env_calls: Mapping[str, str] | None = None) -> Metrics:
    """Add ``/metrics`` and the timing middleware; call after every other middleware (outermost).
    ``env_calls``: the doors' env routes (route template -> call kind) counted as env steps."""
    metrics = Metrics(ctx, app, env_calls)
    app.include_router(metrics.router())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    book = ctx.jobs  # an admin's job book (rock.admin.rollouts)
    if book is not None:
        book.listeners.append(metrics.on_rollout)
    return metrics
