"""Warm pools: sandboxes started ahead of demand, per (image, limits, network, env).

A start from the pool hands over a sandbox whose agent is already connected and whose
spare bash is already running, so the caller's first command runs within milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from rock.runtime.base import RuntimeHandle, SandboxSpec
from rock.worker.agent_client import AgentClient

log = logging.getLogger("rock.worker.pool")

Launched = tuple[RuntimeHandle, AgentClient]
# A refill starts this long after a take: starting a sandbox does synchronous work on the
# event loop (process spawn, mounts) that would otherwise delay the caller's first command.
REFILL_DELAY = 0.05


def pool_key(spec: SandboxSpec) -> tuple:
    """What makes two specs interchangeable for a warm sandbox: image, limits, network, environment and
    mounts."""
    return (spec.image, spec.memory_bytes, spec.cpus, spec.pids_limit, spec.network, tuple(sorted(spec.env.items())),
            tuple(spec.ro_binds), tuple((v.source, v.target, v.read_only) for v in spec.volume_binds))


class WarmPool:
    """Started sandboxes kept ready per template, so that a create matching one takes a sandbox instead of
    starting it; each take starts a refill."""

    def __init__(self, launch: Callable[[SandboxSpec], Awaitable[Launched]],
                 discard: Callable[[RuntimeHandle, AgentClient], Awaitable[None]]):
        self._launch = launch
        self._discard = discard
        self._templates: dict[tuple, tuple[SandboxSpec, int]] = {}
        self._ready: dict[tuple, list[Launched]] = {}
        self._fillers: dict[tuple, asyncio.Task] = {}
        self.filled = asyncio.Event()

    def configure(self, template: SandboxSpec, size: int) -> None:
        """Keep ``size`` sandboxes of ``template`` ready (the fill starts now)."""
        key = pool_key(template)
        self._templates[key] = (template, size)
        self._ready.setdefault(key, [])
        self._refill(key, 0)

    def size(self, key: tuple | None = None) -> int:
        """How many sandboxes are ready for ``key`` (every pool's, without one)."""
        if key is not None:
            return len(self._ready.get(key, ()))
        return sum(len(v) for v in self._ready.values())

    def summary(self) -> list[dict]:
        """Each pool's template and fill, for the admin UI."""
        return [{"image": t.image, "memory_bytes": t.memory_bytes, "cpus": t.cpus, "network": t.network,
                 "ready": len(self._ready.get(key, ())), "size": n} for key, (t, n) in self._templates.items()]

    def images(self) -> set[str | None]:
        """The images the pools keep sandboxes of (None: the default image)."""
        return {spec.image for spec, _ in self._templates.values()}

    def take(self, key: tuple) -> Launched | None:
        """A ready sandbox for ``key`` whose agent still answers (a dead one is discarded), or None."""
        ready = self._ready.get(key)
        while ready:
            handle, client = ready.pop()
            self._refill(key)
            if not client.closed:
                return handle, client
            asyncio.ensure_future(self._discard(handle, client))
        return None

    def _refill(self, key: tuple, delay: float = REFILL_DELAY) -> None:
        task = self._fillers.get(key)
        if task is None or task.done():
            self.filled.clear()
            self._fillers[key] = asyncio.ensure_future(self._fill(key, delay))

    async def _fill(self, key: tuple, delay: float) -> None:
        await asyncio.sleep(delay)
        template, size = self._templates[key]
        ready = self._ready[key]
        failures = 0
        while len(ready) < size and failures < 3:
            spec = template.model_copy(update={"sandbox_id": "pool-" + os.urandom(6).hex()})
            try:
                launched = await self._launch(spec)
                # An agent reports ready before it has started its spare bash (that overlaps a
                # cold start's next steps); a pooled one is only handed out once it answers and
                # its spare bash is up, so the first command neither waits for bash nor shares
                # the CPU with its start-up. A spare that is not up in time is no reason to
                # discard the sandbox: its first session starts a bash.
                try:
                    if not await launched[1].spare_ready():
                        log.info("warm pool: sandbox %s's spare bash is not up; pooled anyway", spec.sandbox_id)
                except BaseException:
                    await self._discard(*launched)
                    raise
                ready.append(launched)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the worker serving; cold starts still work
                failures += 1
                log.warning("warm pool could not start a sandbox (%s): %s", template.image, exc)
        if all(t.done() or t is asyncio.current_task() for t in self._fillers.values()):
            self.filled.set()

    async def close(self) -> None:
        """Stop refilling and discard every ready sandbox."""
        for task in self._fillers.values():
            task.cancel()
        await asyncio.gather(*self._fillers.values(), return_exceptions=True)
        self._fillers.clear()
        launched = [item for items in self._ready.values() for item in items]
        self._ready.clear()
        await asyncio.gather(*(self._discard(h, c) for h, c in launched), return_exceptions=True)
