"""Resource usage of the sandbox from its cgroup, as the sandbox sees it (v1 or v2)."""

import os

ROOT = "/sys/fs/cgroup"


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(value):
    if value is None or value == "max":
        return None
    try:
        n = int(value.split()[0])
    except ValueError:
        return None
    return None if n >= 1 << 62 else n


def collect():
    if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
        usage = _read(os.path.join(ROOT, "cpu.stat")) or ""
        micros = next((int(l.split()[1]) for l in usage.splitlines() if l.startswith("usage_usec")), None)
        return {
            "cpu_seconds": micros / 1e6 if micros is not None else None,
            "memory_bytes": _int(_read(os.path.join(ROOT, "memory.current"))),
            "memory_limit_bytes": _int(_read(os.path.join(ROOT, "memory.max"))),
            "pids": _int(_read(os.path.join(ROOT, "pids.current"))),
            "pids_limit": _int(_read(os.path.join(ROOT, "pids.max"))),
        }
    nanos = _int(_read(os.path.join(ROOT, "cpuacct", "cpuacct.usage")))
    return {
        "cpu_seconds": nanos / 1e9 if nanos is not None else None,
        "memory_bytes": _int(_read(os.path.join(ROOT, "memory", "memory.usage_in_bytes"))),
        "memory_limit_bytes": _int(_read(os.path.join(ROOT, "memory", "memory.limit_in_bytes"))),
        "pids": _int(_read(os.path.join(ROOT, "pids", "pids.current"))),
        "pids_limit": _int(_read(os.path.join(ROOT, "pids", "pids.max"))),
    }


OPS = {"stats": lambda req: collect()}
