"""Schemathesis over every route of real admins, longer than the test suite's bounded run.

Role admin with and without tokens, role proxy with tokens (its own state: the data plane's
routes against a store it shares with nobody), every phase (examples, coverage, fuzzing,
stateful), always the same configuration: ``st run --checks all --max-examples 25 --workers 2``
(``--quick`` changes nothing here: a shorter run would find less and be compared with this one).
Each answer within tests.fuzz.runner.RESPONSE_S unless the schema declares the operation long.
One record per run: operations covered, requests sent, failures by check.
Opt-in (FULL_ONLY): ``python -m bench --only fuzz``.

The open run (part ``fuzz_open``, ``run_open``): the same command on an admin with no tokens and
no cap on the fuzzer's starts (every generated start is made), for at most OPEN_MAX_TIME_S. It
records, beside the findings, whether the machine stayed responsive (/health's latency each
second, the load average, memory pressure), how many sandboxes the admin held at most (its
cgroups), what admission refused (``rock_admission_refused``), and that every sandbox the run made
is stopped at the end (all stopped at once through the admin, then no cgroup of it left).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import Context
from tests.fuzz import runner

TOKEN = "bench-fuzz-token"
EXAMPLES, WORKERS = 25, 2


def _one(ctx: Context, backend: str, role: str, token: str | None) -> dict:
    with AdminProcess(backend, prefix="rock-fuzz-", role=role, token=token) as admin:
        sandbox = runner.start_fixture_sandbox(admin.url, token) if role == "admin" else ""
        label = role + ("+tokens" if token else "")
        ctx.progress(f"fuzz {backend} {label}: {EXAMPLES} examples per operation, {WORKERS} workers")
        phases = "examples,coverage,fuzzing,stateful"
        result = runner.run(admin.url, label, token=token, sandbox=sandbox, max_examples=EXAMPLES, seed=7,
                            max_starts=20, workers=WORKERS, phases=phases)
    if not result.clean:
        ctx.progress(f"fuzz {label}: failures\n{result.output[-6000:]}")
    return {"metric": "schemathesis_fuzz", "backend": backend, "label": label, "n": result.requests,
            "operations": result.operations, "tested": result.tested, "failures": result.failures,
            "failed_operations": result.failed_operations,
            "failures_total": sum(result.failures.values()), "errors": result.errors,
            "tracebacks": result.tracebacks, "seconds": round(result.seconds, 1),
            "success_rate": 1.0 if result.clean else 0.0}


async def run(ctx: Context) -> list[dict]:
    backend = "bwrap" if "bwrap" in ctx.backends else (ctx.backends or ["local"])[0]
    out = []
    for role, token in (("admin", None), ("admin", TOKEN), ("proxy", TOKEN)):
        out.append(await asyncio.to_thread(_one, ctx, backend, role, token))
    print("\nschemathesis  label          operations  tested  requests  failures  errors  tracebacks  seconds")
    for r in out:
        print(f"              {r['label']:<14} {r['operations']:>10}  {r['tested']:>6}  {r['n']:>8}  "
              f"{r['failures_total']:>8}  {r['errors']:>6}  {r['tracebacks']:>10}  {r['seconds']:>7}")
        for check, count in r["failures"].items():  # the run's own output may have been cut above
            print(f"                {check}: {count}  ({', '.join(r['failed_operations'].get(check, []))})")
    return out


# -- the open run: an admin with no tokens and no cap on the fuzzer's starts ---------------------

OPEN_MAX_TIME_S = 1500  # schemathesis ends itself here (its report is still written)
HEALTH_EVERY_S = 1.0


class _Watch:
    """Samples, while the run goes: /health's latency (the machine answers), the load average,
    memory pressure and how many sandbox cgroups this admin holds (what the fuzzer made)."""

    def __init__(self, url: str, owner: str):
        import threading

        self.url, self.owner = url, owner
        self.health: list[float] = []
        self.health_failed = 0
        self.load: list[float] = []
        self.pressure: list[float] = []
        self.groups: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "_Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def _loop(self) -> None:
        import time

        import httpx

        from rock.runtime import cgroups
        from rock.runtime.host_policy import owner_key

        with httpx.Client(timeout=30) as client:
            while not self._stop.wait(HEALTH_EVERY_S):
                t0 = time.perf_counter()
                try:
                    client.get(self.url + "/health").raise_for_status()
                    self.health.append(time.perf_counter() - t0)
                except httpx.HTTPError:
                    self.health_failed += 1
                try:
                    self.load.append(float(open("/proc/loadavg").read().split()[0]))
                    some = open("/proc/pressure/memory").readline().split()  # "some avg10=.. avg60=.."
                    self.pressure.append(float(some[1].split("=")[1]))
                except (OSError, IndexError, ValueError):
                    pass
                self.groups.append(len(cgroups.owned(owner_key(self.owner))))


def _stop_everything(admin: AdminProcess) -> tuple[int, float]:
    """Stop every live sandbox of the admin through its own route, all at once; (how many, seconds)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    live = []
    page = 1
    while True:
        listed = httpx.get(admin.url + runner.SANDBOX_API + "/sandboxes", params={"page_size": 1000, "page": page},
                           timeout=120).json().get("result") or {}
        live += [i["sandbox_id"] for i in listed.get("items") or []
                 if i.get("lifecycle_state") not in ("stopped", "failed", "deleted")]
        if not listed.get("has_more"):
            break
        page += 1
    t0 = time.perf_counter()
    with httpx.Client(timeout=300) as client, ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda sid: client.post(admin.url + runner.SANDBOX_API + "/stop", json={"sandbox_id": sid}),
                      live))
    return len(live), time.perf_counter() - t0


def _open(ctx: Context, backend: str) -> dict:
    import statistics
    import time

    from rock.runtime import cgroups
    from rock.runtime.host_policy import owner_key
    from rock.worker.worker import Worker

    with AdminProcess(backend, prefix="rock-fuzz-open-") as admin:
        owner = Worker.owner_of(admin.state)
        ctx.progress(f"fuzz {backend} admin-open: no cap on starts, {EXAMPLES} examples, {WORKERS} workers, "
                     f"at most {OPEN_MAX_TIME_S}s")
        with _Watch(admin.url, owner) as watch:
            result = runner.run(admin.url, "admin-open", max_examples=EXAMPLES, seed=7, max_starts=10**9,
                                workers=WORKERS, max_time=OPEN_MAX_TIME_S)
        refused = refusals(admin.url)
        stopped, stop_s = _stop_everything(admin)
        deadline = time.monotonic() + 60
        while cgroups.owned(owner_key(owner)) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = len(cgroups.owned(owner_key(owner)))
    if not result.clean:  # the whole output kept: the summary alone is longer than a terminal's tail
        report = Path(tempfile.gettempdir()) / f"rock-fuzz-open-{os.getpid()}.txt"
        report.write_text(result.output)
        ctx.progress(f"fuzz admin-open: failures (the whole output: {report})\n{result.output[-6000:]}")
    health = sorted(watch.health) or [0.0]
    return {"metric": "schemathesis_fuzz_open", "backend": backend, "label": "admin-open", "n": result.requests,
            "operations": result.operations, "tested": result.tested, "failures": result.failures,
            "failed_operations": result.failed_operations, "failures_total": sum(result.failures.values()),
            "errors": result.errors, "tracebacks": result.tracebacks, "seconds": round(result.seconds, 1),
            "health_p50_s": round(statistics.median(health), 4), "health_max_s": round(health[-1], 4),
            "health_failed": watch.health_failed, "health_samples": len(watch.health),
            "load_max": max(watch.load, default=None), "memory_pressure_avg10_max": max(watch.pressure, default=None),
            "sandboxes_peak": max(watch.groups, default=0), "admission_refused": refused,
            "stopped_at_end": stopped, "stop_all_s": round(stop_s, 2), "cgroups_left": left,
            "success_rate": 1.0 if result.clean else 0.0}


def refusals(url: str) -> dict[str, float]:
    """rock_admission_refused from the admin's /metrics: limit/status -> refusals."""
    import httpx

    out = {}
    for line in httpx.get(url + "/metrics", timeout=60).text.splitlines():
        if line.startswith("rock_admission_refused_total{"):
            labels, value = line[len("rock_admission_refused_total{"):].split("} ")
            out[labels] = float(value)
    return out


async def run_open(ctx: Context) -> list[dict]:
    """The open run alone (``python -m bench --only fuzz_open``): what a user's long Schemathesis run
    does to a machine when no tokens and no cap on starts hold it back, and that admission does."""
    backend = "bwrap" if "bwrap" in ctx.backends else (ctx.backends or ["local"])[0]
    r = await asyncio.to_thread(_open, ctx, backend)
    print(f"\nschemathesis open: {r['operations']} operations, {r['n']} requests, {r['failures_total']} failures, "
          f"{r['errors']} errors, {r['tracebacks']} tracebacks in {r['seconds']}s; health p50 {r['health_p50_s']}s "
          f"max {r['health_max_s']}s ({r['health_failed']} failed); load max {r['load_max']}; "
          f"{r['sandboxes_peak']} sandboxes at most; refused {r['admission_refused']}; "
          f"{r['stopped_at_end']} stopped at the end in {r['stop_all_s']}s; {r['cgroups_left']} cgroups left")
    for check, count in r["failures"].items():
        print(f"  {check}: {count}  ({', '.join(r['failed_operations'].get(check, []))})")
    return [r]
