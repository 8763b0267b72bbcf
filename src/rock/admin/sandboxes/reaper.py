"""The admin's reaper: idle sandboxes stopped (or paused, with ``on_timeout: "pause"``) when their
idle TTL runs out, last-used times flushed to the store, and, with a shared store, the sweep of
abandoned starts, missed node losses and orphans (``rock.admin.sandboxes.nodes.sweep``).

Exactly one admin process reaps: the holder of the ``reaper`` lease in the store, taken again
every round. ``Reaper`` is an object the sandbox service holds as ``reaper``; it owns the lease
and its loop, and acts only through the service's public methods (``records``, ``flush``,
``touch``, ``pause``, ``stop``, ``worker``, ``store``), so a reaped sandbox goes through the same
transitions as a caller's stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

from rock.admin.sandboxes.nodes import sweep

log = logging.getLogger("rock.admin")

# Exactly one admin process reaps (idle TTLs, abandoned starts, orphans): the holder of this lease.
REAPER_LEASE = "reaper"
LEASE_TTL = 5.0


class Reaper:
    """The idle-TTL loop and the reaper lease of one admin process (see the module)."""

    def __init__(self, svc):
        self.svc = svc
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.reaping = False  # this process holds the reaper lease
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="rock-reaper")

    async def close(self) -> None:
        """Stop the loop and hand the lease back (another admin takes it at once, not after its TTL)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.reaping:
            await self.svc.store.release_lease(REAPER_LEASE, self.holder)

    async def _loop(self) -> None:
        svc = self.svc
        while True:
            try:
                await asyncio.sleep(min(self._next_check(), LEASE_TTL / 3))
                await svc.flush()
                await self._hold_lease()
                if self.reaping:
                    await self.reap_idle()
                    if svc.store.shared:
                        await sweep(svc)
                    await svc.store.fold_counts()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the reaper must outlive a bad round
                log.exception("reaper round failed")

    async def _hold_lease(self) -> None:
        held = await self.svc.store.acquire_lease(REAPER_LEASE, self.holder, LEASE_TTL)
        if held != self.reaping:
            log.info("admin %s %s the reaper lease", self.holder, "holds" if held else "lost")
        self.reaping = held

    def _next_check(self) -> float:
        """Sleep until the next sandbox could expire, within [0.2, 5] s (flushes last-used at least that often)."""
        now, soonest = time.time(), 5.0
        for r in self.svc.records.values():
            if r.state == "running" and r.auto_clear_seconds:
                soonest = min(soonest, r.last_used_at + r.auto_clear_seconds - now)
        return max(0.2, soonest)

    async def _busy(self, sandbox_id: str) -> bool:
        try:
            record = self.svc.records[sandbox_id]
            agent = await asyncio.wait_for(self.svc.worker.connect(sandbox_id, record.node_id), 10)
            sessions = await asyncio.wait_for(agent.list_sessions(), 10)
        except Exception:  # noqa: BLE001 - an unreachable agent is not busy
            return False
        return any(s.get("running") for s in sessions)

    async def reap_idle(self) -> list[str]:
        """Stop (or pause) each running sandbox idle past its TTL; one running a command is in use."""
        svc, now, reaped = self.svc, time.time(), []
        for record in list(svc.records.values()):
            ttl = record.auto_clear_seconds
            if record.state == "running" and ttl and now - record.last_used_at >= ttl:
                if await self._busy(record.sandbox_id):
                    svc.touch(record)  # a command still running is a use, however long it takes
                    continue
                if record.spec.get("on_timeout") == "pause":  # E2B's lifecycle: kept in memory, resumable
                    log.info("sandbox %s idle for %ss: pausing it", record.sandbox_id, ttl)
                    await svc.pause(record.sandbox_id, record.owner, event="idle_timeout")
                    reaped.append(record.sandbox_id)
                    continue
                log.info("sandbox %s idle for %ss: stopping it", record.sandbox_id, ttl)
                await svc.stop(record.sandbox_id, record.owner, event="idle_timeout")
                reaped.append(record.sandbox_id)
        return reaped
