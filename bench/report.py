"""Benchmark records: percentiles, ratios against floors measured in the same run, table, JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field


def percentile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, less idle and iowait): the
    difference over a run says how much work it made, whichever process did it."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used (user and system, every thread it had), 0 once it is gone. From
    its process CPU clock (``clock_getcpuclockid``), to the nanosecond: a process's share of a
    short window can be a few ms, below the 10 ms ticks of ``/proc/<pid>/stat`` (read where the
    clock is not to be had)."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def state_fs(path: str) -> str:
    """The file system a state dir is on, e.g. ``ext4, no journal``: every start makes and every
    delete removes a few inodes there (the sandbox's directories, log, run directory), and ext4
    without a journal skips every inode freed in the last 60-360 s when it looks for a free one,
    a search that grows with the churn (a quarter of a 100-start burst's CPU on such a disk)."""
    path = os.path.realpath(path)
    best, fstype, device = "", "?", ""
    with open("/proc/mounts") as f:
        for line in f:
            dev, mount, kind = line.split()[:3]
            mount = mount.replace("\\040", " ")
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, fstype, device = mount, kind, dev
    if fstype == "ext4":
        try:
            with open(f"/sys/fs/ext4/{os.path.basename(device)}/journal_task") as f:
                if f.read().strip() == "<none>":
                    return "ext4, no journal"
        except OSError:
            pass
    return fstype


def record(metric: str, backend: str, samples_s: list[float], attempts: int | None = None,
           floor_s: list[float] | None = None, **extra) -> dict:
    """One JSON record from latencies in seconds; ``attempts`` counts failures too."""
    attempts = attempts if attempts is not None else len(samples_s)
    rec = {"metric": metric, "backend": backend, "n": attempts,
           "p50_ms": None, "p95_ms": None, "p99_ms": None,
           "success_rate": round(len(samples_s) / attempts, 4) if attempts else 0.0}
    if samples_s:
        rec.update({f"p{q}_ms": round(percentile(samples_s, q / 100) * 1e3, 4) for q in (50, 95, 99)})
        rec["_samples_ms"] = [s * 1e3 for s in samples_s]  # for bench.plots; not written to the JSON
    if floor_s:
        rec["floor_p50_ms"] = round(percentile(floor_s, 0.5) * 1e3, 4)
        if rec["p50_ms"] is not None and rec["floor_p50_ms"]:
            rec["ratio_to_floor"] = round(rec["p50_ms"] / rec["floor_p50_ms"], 2)
    rec.update(extra)
    return rec


@dataclass
class Context:
    """What every benchmark part gets: which backends, how long to run, shared results."""

    backends: list[str]
    quick: bool
    base_url: str | None = None
    records: list[dict] = field(default_factory=list)

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def progress(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def print_table(records: list[dict]) -> None:
    cols = ["metric", "backend", "event_loop", "env_id", "page", "label", "n", "failures_total", "p50_ms", "p95_ms", "p99_ms", "success_rate", "floor_p50_ms", "ratio_to_floor",
            "per_s", "floor_per_s", "baseline_per_s", "ratio_to_baseline", "ceiling_ratio"]
    cols = [c for c in cols if any(c in r for r in records)]
    rows = [[_fmt(r.get(c)) for c in cols] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def write_json(records: list[dict], path: str) -> None:
    with open(path, "w") as f:
        json.dump([{k: v for k, v in r.items() if not k.startswith("_")} for r in records], f, indent=2)
