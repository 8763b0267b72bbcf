"""Where the admin keeps sandbox records: the live ones in memory (``records``: the hot path
reads them without I/O), a few hundred recently used ended ones beside them (``_ended``), and
every record in the store, where ended ones are read from when asked for (status, listing,
history, the UI). So a long-running admin's memory follows what runs, not what it ever made.

Other processes on the same store (a proxy, admins beside each other) write records too: ``load``
and a refresh every ``REFRESH_S`` pull what they changed, and ``reread`` reads one record now.

``HeldRecords`` is an object the sandbox service (``rock.admin.sandboxes.service``) holds as ``held``. It
owns the records in memory, the writes of them not yet stored and the refresh; it changes no
state. What it needs of the service is passed in and named: whether a sandbox is busy (its lock
held, or its start in flight), how to forget a sandbox that leaves memory, and a wait for the
service's queued writes. The service hands each write it queues to ``track``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Awaitable, Callable

from rock.admin.store import ANY, COLUMNS, HELD, SandboxRecord
from rock.errors import SandboxNotFound

log = logging.getLogger("rock.admin")

REFRESH_S = 0.5  # how often a process sharing the store pulls what others changed


class HeldRecords:
    """The admin's sandbox records: in memory, in the store, and what other processes write.

    ``locked(sid)``: a change of that sandbox is under way (kept in memory meanwhile);
    ``starting(sid)``: its start is in flight here (a refresh does not overwrite it);
    ``forget(sid)``: an ended record left memory (the service drops what it keeps for it);
    ``landed()``: this process's queued writes are stored (before a read of the store)."""

    ended_cache = 256  # ended records kept in memory after their last use (the rest: the store only)

    def __init__(self, settings, store, *, locked: Callable[[str], bool], starting: Callable[[str], bool],
                 forget: Callable[[str], None], landed: Callable[[], Awaitable[None]]) -> None:
        self.settings, self.store = settings, store
        self._locked, self._starting, self._forget, self._landed = locked, starting, forget, landed
        self.records: dict[str, SandboxRecord] = {}  # HELD states only
        self._ended: OrderedDict[str, SandboxRecord] = OrderedDict()  # recently used ended records
        self._unsaved: dict[str, int] = {}  # sandbox_id -> its writes queued, not yet stored
        self._last_write: dict[str, asyncio.Future] = {}  # sandbox_id -> its latest write not yet stored
        self._refresher: asyncio.Task | None = None
        self._seen_at = 0.0  # the store's clock at the last refresh

    # -- where a record is kept ----------------------------------------------------------------

    def known(self, sandbox_id: str) -> SandboxRecord | None:
        """The record if it is in memory (live, or an ended one used lately)."""
        record = self.records.get(sandbox_id)
        if record is None:
            record = self._ended.get(sandbox_id)
            if record is not None:
                self._ended.move_to_end(sandbox_id)
        return record

    def place(self, record: SandboxRecord) -> None:
        """Keep ``record`` where its state says: live ones in ``records``, ended ones in the small cache."""
        sid = record.sandbox_id
        if record.state in HELD:
            self._ended.pop(sid, None)
            self.records[sid] = record
            return
        if self.records.get(sid) is record:
            del self.records[sid]
        self._ended[sid] = record
        self._ended.move_to_end(sid)
        self._trim()

    def _trim(self) -> None:
        # Only records whose writes have landed leave memory: a read of the store must find what we know.
        for sid in list(self._ended)[:max(0, len(self._ended) - self.ended_cache)]:
            if sid in self._unsaved or self._locked(sid):
                continue
            del self._ended[sid]
            self._forget(sid)

    def track(self, sandbox_id: str, saved: asyncio.Future) -> None:
        """A write of the record queued: until it is stored, the record stays in memory (a read
        of the store must find what we know) and ``written`` waits for it."""
        self._unsaved[sandbox_id] = self._unsaved.get(sandbox_id, 0) + 1
        self._last_write[sandbox_id] = saved

        def stored(f: asyncio.Future) -> None:
            left = self._unsaved.pop(sandbox_id, 1) - 1
            if left:
                self._unsaved[sandbox_id] = left
            if self._last_write.get(sandbox_id) is f:
                del self._last_write[sandbox_id]
            if not left and sandbox_id in self._ended:
                self._trim()

        saved.add_done_callback(stored)

    async def lookup(self, sandbox_id: str, owner: str | None, include_deleted: bool = True) -> SandboxRecord:
        """``get``, reading the store for a record that is not in memory (ended, or another process's)."""
        if self.settings.role == "proxy" and not self.store.shared:
            # The admin beside this proxy writes the embedded store: its row, read now, not up
            # to a refresh late (a status right after the admin's start or stop answered).
            return self._visible(sandbox_id, await self.reread(sandbox_id), owner, include_deleted)
        record = self.known(sandbox_id)
        if record is None:
            row = await self.store.get(sandbox_id)
            record = self.known(sandbox_id) or row
            if record is not None:
                self.place(record)  # kept a while (or at once dropped, if the cache is full of busy ones)
        return self._visible(sandbox_id, record, owner, include_deleted)

    async def written(self, sandbox_id: str) -> None:
        """Wait until this process's writes of the record have landed: a read of its history
        right after a change (the state in memory moves first) must show that change."""
        last = self._last_write.get(sandbox_id)
        if last is not None:
            await asyncio.gather(last, return_exceptions=True)

    async def lookup_many(self, sandbox_ids: list[str], owner: str | None) -> list[SandboxRecord]:
        """``lookup`` of each id, those not in memory read from the store in one query (ROCK's batch
        status of 1,000 ended sandboxes was 1,000 reads in a row); missing ones and other
        namespaces' are left out, as the batch route wants."""
        if self.settings.role == "proxy" and not self.store.shared:
            found = []
            for sandbox_id in sandbox_ids:  # each read now (see lookup)
                try:
                    found.append(await self.lookup(sandbox_id, owner))
                except SandboxNotFound:
                    continue
            return found
        unknown = [sid for sid in dict.fromkeys(sandbox_ids) if self.known(sid) is None]
        rows = {r.sandbox_id: r for r in await self.store.get_many(unknown)} if unknown else {}
        records = [self.known(sid) or rows.get(sid) for sid in sandbox_ids]
        return [r for r in records if r is not None and r.owner == owner]

    async def page(self, owner: str | None, filters: dict, state: str | None, newest_first: bool, offset: int,
                   limit: int) -> tuple[list[SandboxRecord], int]:
        """A page of the caller's sandboxes from the store (deleted ones only when ``state`` asks),
        with what memory knows newer (last use) laid over them."""
        await self._landed()  # this process's writes first
        rows, total = await self.store.query(owner, {**filters, "state": state}, exclude_deleted=state is None,
                                             newest_first=newest_first, offset=offset, limit=limit)
        return [self.known(r.sandbox_id) or r for r in rows], total

    async def counts(self, owner=ANY) -> list[dict]:
        """How many records per state, backend and node (``owner``: only that namespace's)."""
        await self._landed()
        return await self.store.counts(owner)

    def get(self, sandbox_id: str, owner: str | None, include_deleted: bool = True) -> SandboxRecord:
        """The record from memory only (``lookup`` also reads the store)."""
        return self._visible(sandbox_id, self.known(sandbox_id), owner, include_deleted)

    @staticmethod
    def _visible(sandbox_id: str, record: SandboxRecord | None, owner: str | None,
                 include_deleted: bool) -> SandboxRecord:
        if record is None or record.owner != owner or (record.state == "deleted" and not include_deleted):
            # Another namespace's sandbox is reported exactly like a missing one.
            raise SandboxNotFound(f"sandbox {sandbox_id} not found")
        return record

    def live(self, owner: str | None) -> list[SandboxRecord]:
        return [r for r in self.records.values() if r.owner == owner]

    def holds(self, sandbox_id: str, owner: str | None) -> bool:
        """A live record of ``owner`` (a lookup, where ``live`` walks every live record)."""
        record = self.records.get(sandbox_id)
        return record is not None and record.owner == owner

    # -- what other processes write ------------------------------------------------------------

    async def load(self) -> None:
        """Read the shared records and keep pulling what other processes change (a proxy, or an
        admin beside other admins); writes stay with the admin that makes them."""
        # The database's clock first, then the held records only (not every record ever made: at
        # 100,000 ended ones that read took seconds); what changes after the clock reading, the
        # first refresh reads.
        _, self._seen_at = await self.store.changed_since(1e18)
        for record in (await self.store.query(states=HELD))[0]:
            self.records[record.sandbox_id] = record
        self._refresher = asyncio.create_task(self._refresh_loop(), name="rock-refresh")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                # A write that committed late may carry an earlier time: look back a little.
                records, self._seen_at = await self.store.changed_since(self._seen_at - 2.0)
            except Exception as exc:  # noqa: BLE001 - the store may be briefly away; keep serving
                log.warning("could not read the shared records: %s", exc)
                continue
            for row in records:
                self._merge(row)

    def _merge(self, row: SandboxRecord) -> None:
        mine = self.known(row.sandbox_id)
        if mine is None:
            if row.state in HELD:  # another process's ended sandbox stays in the store
                self.records[row.sandbox_id] = row
        elif row.rev > mine.rev and not self._starting(row.sandbox_id):
            used = max(mine.last_used_at, row.last_used_at)
            for column in COLUMNS:
                setattr(mine, column, getattr(row, column))
            mine.last_used_at = used
            self.place(mine)

    async def reread(self, sandbox_id: str) -> SandboxRecord | None:
        """The store's copy of a record another process writes, laid over (or placed as) ours. A
        start the admin just answered may still be on its way to an embedded store (SQLite writes
        land in the background): a pending record is read again for up to a second."""
        for _ in range(10):
            row = await self.store.get(sandbox_id)
            if row is not None and self.known(sandbox_id) is None:
                self.place(row)  # an ended one is kept a while, as ``lookup`` keeps it
            elif row is not None:
                self._merge(row)
            record = self.known(sandbox_id) or row
            if record is None or record.state != "pending" or self.store.shared:
                return record
            await asyncio.sleep(0.1)
        return record
