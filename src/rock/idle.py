"""An idle-TTL timer: a task that runs a service's ``reap()`` when the soonest idle deadline may
have come, and ends when there is nothing left to watch.

The env service (envs idle past their TTL, env sandboxes empty past their linger) and the
training service (instances idle past theirs) each hold one: they say what to reap and when the
soonest deadline is, the timer does the waiting. A timer, not a poll: it sleeps until the
soonest deadline (within [0.2, 30] s, so a clock jump or a missed wake is corrected soon), or
until told that a new deadline comes sooner than the one it sleeps towards. What they hold is
``Leased``: its idle time counts from its last use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MIN_SLEEP, MAX_SLEEP = 0.2, 30.0


@dataclass(eq=False, kw_only=True)
class Leased:
    """A record a service holds until it is idle past a TTL (an open env, a training instance): when it
    was made and when a call last used it (wall-clock seconds), which ``touch()`` renews."""

    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)

    def touch(self) -> None:
        """A call used it: its idle time starts again."""
        self.last_used = time.time()


class IdleReaper:
    """Runs ``reap()`` at the deadlines ``next_check()`` gives (seconds from now) while ``watching()``;
    a round that fails is logged on ``log`` and the timer goes on."""

    def __init__(self, name: str, reap: Callable[[], Awaitable[object]], next_check: Callable[[], float],
                 watching: Callable[[], bool], log: logging.Logger):
        self.name = name
        self._reap, self._next_check, self._watching, self._log = reap, next_check, watching, log
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def start(self, sooner: bool = False) -> None:
        """Start the timer if it is not running; ``sooner``: a deadline earlier than any before
        was set (a shorter TTL, a lease), so a running timer sleeps again until the new soonest."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=self.name)
        elif sooner:
            self._wake.set()

    async def close(self) -> None:
        """Stop the timer (on the service's shutdown)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while self._watching():
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), min(MAX_SLEEP, max(MIN_SLEEP, self._next_check())))
                continue  # woken: a sooner deadline, sleep again until it
            except asyncio.TimeoutError:
                pass
            try:
                await self._reap()
            except Exception:  # noqa: BLE001 - the reaper must outlive a bad round
                self._log.exception("%s: a round failed", self.name)
