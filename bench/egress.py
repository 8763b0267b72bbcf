"""Egress policies: what the gate costs against the same sandbox reaching the same server with
``network: true`` and no policy (docker's fenced bridge), on a real admin in its own process.

egress_request     one HTTP request per new connection from inside the sandbox to a server in a
                   network namespace of the bench's own (``tests.security.egress_internet``):
                   p50/p99 through the gate (by name, our resolver's answer) and direct
                   (by address), and ``added_p50_ms`` / ``added_p99_ms``
egress_bulk        one 64 MB download (16 MB with --quick): MB/s through the gate and direct,
                   ``ratio`` (target at least 0.8)
egress_start       sandbox start with a policy against without

The gate's side asks our resolver for the name on every request (as a client does); with
``BENCH_EGRESS_BY_ADDRESS=1`` it dials the address (policy allowing it), which isolates the relay.

Measured in alternating blocks (gate, direct, gate, ...) so a busy moment of the shared machine
falls on both sides. Beside each request's time, what the admin's process spent on it (its CPU,
and its time waiting for a CPU, from the kernel's schedstat of all its threads) per request:
the gate relays in the admin's process, so on a loaded machine each of its wake-ups (DNS
questions, accept, the upstream's answer) waits for a CPU that the kernel-only direct path
never needs; ``admin_cpu_ms`` is the gate's own cost, ``admin_wait_ms`` the machine's load.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from bench.admin import AdminProcess
from bench.report import percentile, record
from rock.runtime import get_runtime_class
from rock.sdk.sandbox import Sandbox, SandboxConfig

# In the sandbox: N requests, each on a new connection, to HOST (the Host header NAME, with an
# Authorization header when one is given), then one download of BULK bytes (none for 0). Prints each
# request's seconds and then the download's MB/s (0 without one).
PROBE = r"""
import socket, sys, time
host, name, n, bulk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
auth = f"Authorization: {sys.argv[5]}\r\n" if len(sys.argv) > 5 else ""
times = []
for _ in range(n):
    t = time.perf_counter()
    s = socket.create_connection((host, 80), timeout=10)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\n{auth}Connection: close\r\n\r\n".encode())
    while s.recv(65536):
        pass
    s.close()
    times.append(time.perf_counter() - t)
rate = 0.0
if bulk:
    t = time.perf_counter()
    s = socket.create_connection((host, 80), timeout=30)
    s.sendall(f"GET /bulk?n={bulk} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
    got = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    rate = got / (time.perf_counter() - t) / 1e6
print(" ".join(f"{x:.6f}" for x in times), rate)
"""


def admin_times(pid: int | None) -> tuple[float, float]:
    """(CPU s, s waiting for a CPU) of every thread of ``pid`` so far (0, 0 when unreadable)."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").glob("*") if pid else ():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


def unavailable() -> str | None:
    return get_runtime_class("docker").available()


async def run(ctx) -> list[dict]:
    from tests.security.egress_internet import Internet

    blocks, n, bulk = (2, 20, 16 << 20) if ctx.quick else (4, 50, 64 << 20)
    net = Internet("bge", ("srv.test",)).start()
    address = net.addresses["srv.test"]
    os.environ["ROCK_EGRESS_HOSTS"] = json.dumps(net.addresses)
    admin = AdminProcess("docker", prefix="rock-bench-egress-")
    try:
        admin.start()
        lat = {"gate": [], "direct": []}
        rate = {"gate": [], "direct": []}
        starts = {"gate": [], "direct": []}
        spent = {"gate": [0.0, 0.0], "direct": [0.0, 0.0]}  # the admin's CPU and CPU-wait seconds
        for _ in range(blocks):
            for side in ("gate", "direct"):
                extra = {"egress": {"allow": ["srv.test", address]}} if side == "gate" else {"network": True}
                box = Sandbox(SandboxConfig(base_url=admin.url, memory="512m", cpus=1, **extra))
                t = time.perf_counter()
                await box.start()
                starts[side].append(time.perf_counter() - t)
                try:
                    await box.write_bytes("/tmp/probe.py", PROBE.encode())
                    host, name = (address if os.environ.get("BENCH_EGRESS_BY_ADDRESS") else "srv.test", "srv.test") if side == "gate" else (address, "srv.test")
                    before = admin_times(admin.pid())  # the requests alone (the last "bulk" one empty)
                    out = (await box.arun(f"python3 /tmp/probe.py {host} {name} {n} 0")).output.split()
                    after = admin_times(admin.pid())
                    spent[side] = [spent[side][i] + after[i] - before[i] for i in (0, 1)]
                    lat[side] += [float(x) for x in out[:-1]]
                    out = (await box.arun(f"python3 /tmp/probe.py {host} {name} 0 {bulk}")).output.split()
                    rate[side].append(float(out[-1]))
                finally:
                    await box.stop()
        g50, d50 = percentile(lat["gate"], 0.5), percentile(lat["direct"], 0.5)
        g99, d99 = percentile(lat["gate"], 0.99), percentile(lat["direct"], 0.99)
        gate_mb, direct_mb = statistics.median(rate["gate"]), statistics.median(rate["direct"])
        return [
            record("egress_request", "docker", lat["gate"], direct_p50_ms=round(d50 * 1e3, 3),
                   direct_p99_ms=round(d99 * 1e3, 3), added_p50_ms=round((g50 - d50) * 1e3, 3),
                   added_p99_ms=round((g99 - d99) * 1e3, 3), blocks=blocks,
                   # per request, from the admin's schedstat around the requests alone
                   **{f"{side}_admin_{what}_ms": round(spent[side][i] / (blocks * (n + 1)) * 1e3, 3)
                      for side in spent for i, what in enumerate(("cpu", "wait"))}),
            record("egress_bulk", "docker", [], gate_mb_s=round(gate_mb, 1), direct_mb_s=round(direct_mb, 1),
                   ratio=round(gate_mb / direct_mb, 3) if direct_mb else None, target_ratio=0.8, bytes=bulk),
            record("egress_start", "docker", starts["gate"], direct_p50_ms=round(percentile(starts["direct"], 0.5) * 1e3, 1),
                   added_p50_ms=round((percentile(starts["gate"], 0.5) - percentile(starts["direct"], 0.5)) * 1e3, 1)),
        ]
    finally:
        admin.stop()
        os.environ.pop("ROCK_EGRESS_HOSTS", None)
        net.stop()
