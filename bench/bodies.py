"""Request bodies against the admin's memory and its other callers (a real admin per backend, in
its own process):

upload_gzip_bomb    E2B POST /files, Content-Encoding: gzip, ~1 MiB on the wire inflating to 1 GiB
                    (256 MiB with --quick): written to the sandbox as it inflates
upload_raw_1g       E2B POST /files, a 1 GB octet-stream body (256 MB with --quick)

Each record's latencies are another caller's ``execute("true")`` in another sandbox, made back
to back while the upload runs (p50/p95/p99), against the same calls on the idle admin
(``floor_p50_ms``, ``floor_p99_ms``). With them: the admin's resident memory idle
(``idle_rss_mb``) and at its peak during the upload (``peak_rss_mb``, from VmHWM after
resetting it through /proc/PID/clear_refs, else sampled every 5 ms), ``peak_over_idle_mb``
against ``target_over_idle_mb`` (50), the body's size and how long the upload took.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from pathlib import Path

import httpx

from bench.admin import SANDBOX_API, AdminProcess
from bench.report import percentile, record
from bench.sdk import isolated

MB = 1 << 20
TARGET_OVER_IDLE_MB = 50


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


class _Peak:
    """The admin's peak RSS over a stretch: VmHWM reset at the start where the kernel allows it
    (writing 5 to clear_refs, root or the process's owner), and 5 ms samples of VmRSS besides."""

    def __init__(self, pid: int):
        self.pid, self.sampled = pid, 0
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sampled = max(self.sampled, _status(self.pid)["VmRSS"])
            await asyncio.sleep(0.005)

    def peak(self) -> int:
        now = _status(self.pid)
        return max(self.sampled, now["VmRSS"], now["VmHWM"] if self.hwm_reset else 0)


def _bomb(total: int) -> bytes:
    packer, out, piece = zlib.compressobj(9, zlib.DEFLATED, 31), [], bytes(16 * MB)
    for _ in range(total // len(piece)):
        out.append(packer.compress(piece))
    return b"".join(out) + packer.flush()


async def _zeros(total: int):
    piece = bytes(MB)
    for _ in range(total // MB):
        yield piece


async def _other_caller(client: httpx.AsyncClient, sandbox_id: str, stop: asyncio.Event, limit: int = 0) -> list[float]:
    """``execute("true")`` back to back until ``stop`` (or ``limit`` calls); the latencies."""
    out = []
    while not stop.is_set() and (not limit or len(out) < limit):
        t0 = time.perf_counter()
        r = await client.post(SANDBOX_API + "/execute", json={"sandbox_id": sandbox_id, "command": "true"})
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return out


async def _backend(ctx, backend: str) -> list[dict]:
    with AdminProcess(backend, prefix="rock-bench-bodies-") as admin:
        url = admin.url
        pid = admin.pid()
        records = []
        big = ctx.n(256, 1024) * MB
        async with httpx.AsyncClient(base_url=url, timeout=1800) as client:
            r = await client.post(SANDBOX_API + "/start", json={"memory": "512m", "cpus": 0.5})
            other = r.json()["result"]["sandbox_id"]
            r = await client.post("/v2/sandboxes", headers={"X-API-KEY": "bench"}, json={"templateID": "base", "timeout": 1800})
            box = r.json()
            envd = {"E2b-Sandbox-Id": box["sandboxID"], "X-Access-Token": box["envdAccessToken"]}
            bomb = _bomb(big)
            for metric, headers, body in (
                    ("upload_gzip_bomb", {"content-type": "application/octet-stream", "content-encoding": "gzip"},
                     lambda: bomb),
                    ("upload_raw_1g", {"content-type": "application/octet-stream"}, lambda: _zeros(big))):
                # warm: one small upload of the same kind, then the idle admin's memory and latency
                await client.post("/files", params={"path": "/tmp/warm"}, headers={**envd, **headers},
                                  content=zlib.compress(b"w", wbits=31) if "content-encoding" in headers else b"w")
                idle = await _other_caller(client, other, asyncio.Event(), ctx.n(100, 300))
                idle_rss = _status(pid)["VmRSS"]
                ctx.progress(f"bodies {backend}: {metric} ({big >> 20} MiB) with another caller's execute")
                stop, peak = asyncio.Event(), _Peak(pid)
                sampler = asyncio.create_task(peak.sample(stop))
                caller = asyncio.create_task(_other_caller(client, other, stop))
                t0 = time.perf_counter()
                r = await client.post("/files", params={"path": "/tmp/body"}, headers={**envd, **headers},
                                      content=body())
                upload_s = time.perf_counter() - t0
                stop.set()
                during = await caller
                await sampler
                assert r.status_code == 200, r.text[:300]
                await client.post(SANDBOX_API + "/execute", json={"sandbox_id": box["sandboxID"], "command": "rm -f /tmp/body"})
                top = peak.peak()
                records.append(record(
                    metric, backend, during, floor_s=idle, floor_p99_ms=round(percentile(idle, 0.99) * 1e3, 4),
                    body_mb=round(big / MB), wire_mb=round(len(bomb) / MB, 3) if "content-encoding" in headers else round(big / MB),
                    upload_s=round(upload_s, 3), idle_rss_mb=round(idle_rss / MB, 1), peak_rss_mb=round(top / MB, 1),
                    peak_over_idle_mb=round((top - idle_rss) / MB, 1), target_over_idle_mb=TARGET_OVER_IDLE_MB,
                    peak_from="VmHWM" if peak.hwm_reset else "VmRSS samples"))
            await client.delete(f"/sandboxes/{box['sandboxID']}", headers={"X-API-KEY": "bench"})
    return records


async def run(ctx) -> list[dict]:
    return [r for backend in isolated(ctx) for r in await _backend(ctx, backend)]
