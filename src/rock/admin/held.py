"""Where the admin keeps sandbox records: the live ones in memory (``records``: the hot path
reads them without I/O), a few hundred recently used ended ones beside them (``_ended``), and
every record in the store, where ended ones are read from when asked for (status, listing,
history, the UI). So a long-running admin's memory follows what runs, not what it ever made.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from rock.admin.store import ANY, HELD, SandboxRecord
from rock.errors import SandboxNotFound


class HeldRecords:
    """The record-keeping half of ``Sandboxes`` (which sets ``store``, ``commands``, ``_locks``, ``_saving``)."""

    ended_cache = 256  # ended records kept in memory after their last use (the rest: the store only)

    def __init__(self) -> None:
        self.records: dict[str, SandboxRecord] = {}  # HELD states only
        self._ended: OrderedDict[str, SandboxRecord] = OrderedDict()  # recently used ended records
        self._unsaved: dict[str, int] = {}  # sandbox_id -> its writes queued, not yet stored

    # -- where a record is kept ----------------------------------------------------------------

    def known(self, sandbox_id: str) -> SandboxRecord | None:
        """The record if it is in memory (live, or an ended one used lately)."""
        record = self.records.get(sandbox_id)
        if record is None:
            record = self._ended.get(sandbox_id)
            if record is not None:
                self._ended.move_to_end(sandbox_id)
        return record

    def _place(self, record: SandboxRecord) -> None:
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
            lock = self._locks.get(sid)
            if sid in self._unsaved or (lock is not None and lock.locked()):
                continue
            del self._ended[sid]
            self._locks.pop(sid, None)
            self.commands.forget(sid)

    async def lookup(self, sandbox_id: str, owner: str | None, include_deleted: bool = True) -> SandboxRecord:
        """``get``, reading the store for a record that is not in memory (ended, or another process's)."""
        record = self.known(sandbox_id)
        if record is None:
            row = await self.store.get(sandbox_id)
            record = self.known(sandbox_id) or row
            if record is not None:
                self._place(record)  # kept a while (or at once dropped, if the cache is full of busy ones)
        return self._visible(sandbox_id, record, owner, include_deleted)

    async def page(self, owner: str | None, filters: dict, state: str | None, newest_first: bool, offset: int,
                   limit: int) -> tuple[list[SandboxRecord], int]:
        """A page of the caller's sandboxes from the store (deleted ones only when ``state`` asks),
        with what memory knows newer (last use) laid over them."""
        await asyncio.gather(*list(self._saving), return_exceptions=True)  # this process's writes first
        rows, total = await self.store.query(owner, {**filters, "state": state}, exclude_deleted=state is None,
                                             newest_first=newest_first, offset=offset, limit=limit)
        return [self.known(r.sandbox_id) or r for r in rows], total

    async def counts(self, owner=ANY) -> list[dict]:
        """How many records per state, backend and node (``owner``: only that namespace's)."""
        await asyncio.gather(*list(self._saving), return_exceptions=True)
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


