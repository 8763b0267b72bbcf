"""The admin UI's page time with 1,000 sandbox records in the store.

ui_page_p50  one record per page: the overview (``/``), the sandboxes table (``/ui/sandboxes``,
             newest 50 of the 1,000, a few of them running so their live usage is read) and the
             table filtered by state and image; each timed as a browser's GET of the whole HTML.
             Target: p50 <= 200 ms. Floor: ``GET /health`` of the same admin, timed in the same
             alternating blocks (this VM's speed drifts within a minute).

The records are written into the admin's store before it starts, as a long-lived admin has
them; the admin is ``rock admin start`` in its own process, as users run it.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx

from bench.admin import SANDBOX_API, AdminProcess
from bench.report import record
from bench.sdk import usable
from rock.admin.store import SandboxRecord
from rock.admin.store.backends import open_store

RECORDS = 1000
RUNNING = 5
TARGET_MS = 200.0
PAGES = {"overview": "/", "sandboxes": "/ui/sandboxes",
         "sandboxes_filtered": "/ui/sandboxes?state=stopped&image=bench:img-3"}


async def fill_store(state_dir: str, n: int) -> None:
    """``n`` finished sandboxes of 10 images, 20 users and 8 experiments, stopped within the last
    20 hours (the admin deletes a sandbox stopped longer than auto_delete_seconds, 24 h, when it starts)."""
    rng = random.Random(7)
    store = open_store(None, Path(state_dir))  # the embedded store the admin will open
    await store.open()
    try:
        now = time.time()
        saves = []
        for i in range(n):
            created = now - rng.uniform(700, 20 * 3600)
            state = rng.choice(["stopped", "stopped", "stopped", "failed"])
            r = SandboxRecord(
                sandbox_id=f"bench{i:05d}", state=state, image=f"bench:img-{i % 10}", user_id=f"user-{i % 20}",
                experiment_id=f"exp-{i % 8}", namespace="bench", backend="bwrap", cpus=1.0, memory="1g",
                auto_clear_seconds=300, created_at=created, started_at=created + 0.2, stopped_at=created + 600,
                last_used_at=created + 500, spec={"image": f"bench:img-{i % 10}", "memory": "1g", "cpus": 1.0},
                failure_reason="agent exited" if state == "failed" else None)
            saves.append(store.save(r, None, "create"))
        await asyncio.gather(*saves)
    finally:
        await store.close()


def _time_get(client: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        elapsed = time.perf_counter() - t0
        r.raise_for_status()
        out.append(elapsed)
    return out


async def _bench(ctx, backend: str) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-ui-")
    await fill_store(admin.state, RECORDS)
    url = admin.start()
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(RUNNING):  # real sandboxes on the table's first page
                client.post(SANDBOX_API + "/start", json={"memory": "256m", "cpus": 0.5}).raise_for_status()
            listed = client.get(SANDBOX_API + "/sandboxes", params={"page_size": 1}).json()["result"]["total"]
            ctx.progress(f"ui {backend}: {listed} sandbox records listed; timing pages")
            for path in PAGES.values():  # warm-up: templates compiled, connections open
                _time_get(client, path, 3)
            samples = {name: [] for name in PAGES}
            floor: list[float] = []
            blocks, per_block = ctx.n(4, 12), ctx.n(5, 10)
            for _ in range(blocks):
                floor += _time_get(client, "/health", per_block)
                for name, path in PAGES.items():
                    samples[name] += _time_get(client, path, per_block)
            sizes = {name: len(client.get(path).content) for name, path in PAGES.items()}
    finally:
        await asyncio.to_thread(admin.stop)
    records = []
    for name, s in samples.items():
        rec = record("ui_page_p50", backend, s, floor_s=floor, page=name, records=listed, html_bytes=sizes[name],
                     target_ms=TARGET_MS)
        rec["meets_target"] = rec["p50_ms"] is not None and rec["p50_ms"] <= TARGET_MS
        records.append(rec)
    return records


async def run(ctx) -> list[dict]:
    # One backend is enough: the pages read the admin's memory, not the sandboxes (bwrap first:
    # its few running sandboxes start in milliseconds).
    backends = sorted(usable(ctx), key=lambda b: b != "bwrap")[:1]
    records = []
    for backend in backends:
        records += await _bench(ctx, backend)
    return records
