"""What is left of a deleted bwrap sandbox after its processes were killed: its cgroup (removable
only once the kernel has let the killed processes go) and its directory. One thread does it for
all sandboxes, in rounds, so the event loop every start and command shares neither polls nor
waits for it; it ends once the queue has stayed empty for ``IDLE_EXIT``.

A delete kills the sandbox's processes before it returns (``BwrapRuntime.release``); only the
removal comes later. Nothing is dropped: an entry leaves the queue only once its group and its
directory are gone; ``drain`` (the runtime's close) waits for the queue; a create of the same id
waits for its entry first; and what a crash leaves behind the next start's ``reap`` removes, as
it always did.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from pathlib import Path

from rock.runtime import cgroups
from rock.runtime.mounts import detach

log = logging.getLogger("rock.runtime.bwrap")


async def remove_sandbox_dir(sandbox_dir: Path) -> None:
    """A sandbox's directory, whatever is left in it (its root is still mounted only if the worker
    died during a create)."""
    detach(sandbox_dir / "root")
    await asyncio.to_thread(shutil.rmtree, sandbox_dir, ignore_errors=True)


async def reap_unknown(owner_key: str, sandboxes_dir: Path, known: set[str]) -> set[str]:
    """Remove this owner's cgroups and sandbox directories that no known sandbox uses (what a
    crashed worker left; for the backends that keep a directory and a group per sandbox)."""
    removed: set[str] = set()
    for name, group in cgroups.owned(owner_key).items():
        if cgroups.sandbox_of(name) not in known:
            await group.destroy()
            group.remove_elsewhere()
            removed.add(cgroups.sandbox_of(name))
    cgroups.remove_empty_owner(owner_key)  # where runsc's own deletes (gvisor's reap) removed every group
    for d in list(sandboxes_dir.iterdir()):
        if d.is_dir() and d.name not in known:
            await remove_sandbox_dir(d)
            removed.add(d.name)
    return removed

# A killed sandbox's processes take a few milliseconds to leave its group: the first attempt
# waits that long, later ones back off (attempts, not time, are what cost).
FIRST_DELAY, MAX_DELAY = 0.004, 0.05
KILL_EVERY = 4
SLOW_AFTER = 10.0  # a group still busy this long is reported (and still retried)
# An emptied queue's thread waits this long for the next delete before it ends: a trainer that
# deletes one sandbox after another would otherwise start a thread per delete, and
# Thread.start holds the event loop until the new thread runs (0.6-0.8 ms a delete here).
IDLE_EXIT = 5.0


class _Entry:
    __slots__ = ("group", "sandbox_dir", "since", "warned", "waiters", "delay", "next_at", "tries")

    def __init__(self, group: cgroups.Cgroup, sandbox_dir: Path):
        self.group, self.sandbox_dir = group, sandbox_dir
        self.since, self.warned = time.monotonic(), False
        self.delay, self.tries = FIRST_DELAY, 0
        self.next_at = self.since + FIRST_DELAY
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []


class Teardown:
    """The queue of deleted bwrap sandboxes whose cgroup and directory are still to go, emptied by one
    thread in rounds."""

    def __init__(self) -> None:
        self._pending: dict[str, _Entry] = {}  # key: the sandbox directory
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, group: cgroups.Cgroup, sandbox_dir: Path) -> None:
        """Remove ``group`` (its members already killed) and then ``sandbox_dir``."""
        with self._lock:
            self._pending.setdefault(str(sandbox_dir), _Entry(group, sandbox_dir))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rock-teardown", daemon=True)
                self._thread.start()
        self._wake.set()

    async def wait(self, sandbox_dir: Path) -> None:
        """Until ``sandbox_dir``'s teardown (if one is queued) is done."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._pending.get(str(sandbox_dir))
            if entry is None:
                return
            future = loop.create_future()
            entry.waiters.append((loop, future))
        await future

    async def drain(self) -> None:
        """Until every queued teardown is done."""
        with self._lock:
            dirs = [Path(key) for key in self._pending]
        for sandbox_dir in dirs:
            await self.wait(sandbox_dir)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            self._wake.clear()  # a submit from here on wakes the wait below
            now = time.monotonic()
            with self._lock:
                if self._pending:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= IDLE_EXIT:
                    # Under the lock that submit checks the thread under: a submit from now on starts a new one.
                    self._thread = None
                    return
                due = [(key, entry) for key, entry in self._pending.items() if entry.next_at <= now]
            for key, entry in due:
                try:
                    done = self._try(entry)
                except Exception:  # noqa: BLE001 - one bad entry must not stop the others
                    log.exception("removing %s failed; the worker's reap retries at its next start", entry.group)
                    done = True
                if done:
                    with self._lock:
                        del self._pending[key]
                    for loop, future in entry.waiters:
                        try:
                            loop.call_soon_threadsafe(_resolve, future)
                        except RuntimeError:  # that loop has closed: nobody waits any more
                            pass
                else:  # each group on its own back-off: few attempts, however many are queued
                    entry.delay = min(entry.delay * 2, MAX_DELAY)
                    entry.next_at = time.monotonic() + entry.delay
            with self._lock:
                soonest = min((entry.next_at for entry in self._pending.values()),
                              default=(now if idle_since is None else idle_since) + IDLE_EXIT)
            self._wake.wait(max(0.0, soonest - time.monotonic()))

    def _try(self, entry: _Entry) -> bool:
        """One attempt: True once the group and the directory are gone. Every syscall here takes
        the GIL back from the event loop: the group's members are killed again only every few
        attempts (in case one forked as the first kill came), the other attempts only rmdir."""
        entry.tries += 1
        if not entry.group.try_remove(kill=entry.tries % KILL_EVERY == 1):
            waited = time.monotonic() - entry.since
            if waited > SLOW_AFTER and not entry.warned:
                entry.warned = True
                log.warning("%s still has processes %s after %.0f s; still trying", entry.group,
                            sorted(entry.group.pids()), waited)
            return False
        detach(entry.sandbox_dir / "root")  # still mounted only if the worker died during a create
        shutil.rmtree(entry.sandbox_dir, ignore_errors=True)
        return True


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
