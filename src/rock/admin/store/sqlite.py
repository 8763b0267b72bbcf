"""The store in SQLite: the embedded default (one machine).

All SQL runs on one dedicated thread so the event loop never blocks on disk; WAL mode keeps
readers (a ``proxy`` role process) and the writer apart. The hot path never writes here: uses
of a sandbox only bump ``last_used_at`` in memory, and ``flush_last_used`` writes them in one batch.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rock.admin.store import COLUMNS, INDEXES, INSTANCE_COLUMNS, TEMPLATE_SCHEMA, WRITTEN, SandboxRecord, Store

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sandboxes (
    sandbox_id TEXT PRIMARY KEY, {", ".join(c for c in COLUMNS if c != "sandbox_id")}
);
CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sandbox_id TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
    event TEXT NOT NULL, message TEXT, ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_sandbox ON history(sandbox_id, id);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS claims (name TEXT PRIMARY KEY, owner TEXT NOT NULL, claimed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS training_instances (
    instance_id TEXT PRIMARY KEY, owner TEXT, env_type TEXT NOT NULL, task_id TEXT NOT NULL, handle TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_NEXT_REV = "(SELECT COALESCE(MAX(rev), 0) + 1 FROM sandboxes)"


def _row(record: SandboxRecord) -> tuple:
    # The fields as they are now; the spec as JSON text now, which is also its copy (as the
    # PostgreSQL store does: dataclasses.asdict's deep copy, four times per start and delete).
    return tuple(json.dumps(record.spec) if c == "spec" else getattr(record, c) for c in WRITTEN)


def _record(row: sqlite3.Row) -> SandboxRecord:
    d = dict(row)
    d["spec"] = json.loads(d["spec"] or "{}")
    d["rev"] = d.get("rev") or 0
    d["updated_at"] = d.get("updated_at") or 0.0
    return SandboxRecord(**{c: d.get(c) for c in COLUMNS})


class SqliteStore(Store):
    """The store in one SQLite file (WAL), for one machine: every statement runs on one dedicated thread,
    off the event loop."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rock-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        have = {r[1] for r in db.execute("PRAGMA table_info(sandboxes)")}
        for column in COLUMNS:  # forward-compatible: new fields become new columns
            if column not in have:
                db.execute(f"ALTER TABLE sandboxes ADD COLUMN {column}")
        db.execute("CREATE INDEX IF NOT EXISTS sandboxes_updated ON sandboxes(updated_at)")
        db.execute("CREATE INDEX IF NOT EXISTS sandboxes_created ON sandboxes(created_at)")
        db.execute("CREATE INDEX IF NOT EXISTS sandboxes_due ON sandboxes(due_at)")
        db.execute("CREATE INDEX IF NOT EXISTS sandboxes_rev ON sandboxes(rev)")  # each save's MAX(rev)+1: no scan
        for statement in [*INDEXES, *TEMPLATE_SCHEMA]:
            db.execute(statement)
        self._db = db

    async def open(self) -> None:
        """Open the file, making the tables and indexes (and adding the columns an older file lacks)."""
        await self._run(self._open)

    async def close(self) -> None:
        """Close the database after the statements queued before it, and stop the store's thread."""
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    # -- records ----------------------------------------------------------------------------

    def _save(self, row: tuple, sandbox_id: str, state: str, from_state: str | None, event: str | None,
              message: str | None) -> int:
        # The row was taken when the write was queued: a later change to the record is a later write.
        assert self._db is not None
        now = time.time()
        placeholders = ",".join("?" for _ in WRITTEN)
        with self._db:  # one transaction: the record and its history line agree
            self._db.execute("BEGIN IMMEDIATE")
            rev = self._db.execute(f"SELECT {_NEXT_REV}").fetchone()[0]
            self._db.execute(f"INSERT OR REPLACE INTO sandboxes ({','.join(WRITTEN)}, rev, updated_at) "
                             f"VALUES ({placeholders}, ?, ?)", (*row, rev, now))
            if event is not None:
                self._db.execute(
                    "INSERT INTO history (sandbox_id, from_state, to_state, event, message, ts) VALUES (?,?,?,?,?,?)",
                    (sandbox_id, from_state, state, event, message, now))
        return rev

    def save(self, record: SandboxRecord, from_state: str | None = None, event: str | None = None,
             message: str | None = None) -> asyncio.Future:
        """Queue the record's write on the store's thread (writes land in call order); the future gives its
        revision."""
        return asyncio.get_running_loop().run_in_executor(self._pool, self._save, _row(record), record.sandbox_id,
                                                          record.state, from_state, event, message)

    def _get(self, sandbox_id: str) -> SandboxRecord | None:
        row = self._db.execute("SELECT * FROM sandboxes WHERE sandbox_id=?", (sandbox_id,)).fetchone()
        return _record(row) if row else None

    async def get(self, sandbox_id: str) -> SandboxRecord | None:
        """The record of ``sandbox_id`` (deleted ones included), or None."""
        return await self._run(self._get, sandbox_id)

    def _all(self, include_deleted: bool) -> list[SandboxRecord]:
        sql = "SELECT * FROM sandboxes" + ("" if include_deleted else " WHERE state != 'deleted'")
        return [_record(r) for r in self._db.execute(sql)]

    async def all(self, include_deleted: bool = False) -> list[SandboxRecord]:
        """Every record, the deleted ones only with ``include_deleted``."""
        return await self._run(self._all, include_deleted)

    def _changed(self, since: float) -> tuple[list[SandboxRecord], float]:
        now = time.time()
        return [_record(r) for r in self._db.execute("SELECT * FROM sandboxes WHERE updated_at >= ?", (since,))], now

    async def changed_since(self, since: float) -> tuple[list[SandboxRecord], float]:
        """Records written at or after ``since``, and the time now."""
        return await self._run(self._changed, since)

    def _history(self, sandbox_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT from_state, to_state, event, message, ts FROM history WHERE sandbox_id=? ORDER BY id",
            (sandbox_id,))
        return [dict(r) for r in rows]

    async def history(self, sandbox_id: str) -> list[dict]:
        """The state transitions of ``sandbox_id``, oldest first."""
        return await self._run(self._history, sandbox_id)

    async def _records(self, sql: str, args: tuple) -> list[SandboxRecord]:
        return await self._run(lambda: [_record(r) for r in self._db.execute(sql, args)])

    async def _rows(self, sql: str, args: tuple) -> list[dict]:
        return await self._run(lambda: [dict(r) for r in self._db.execute(sql, args)])

    def _flush(self, used: list[tuple[float, float, str]]) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rev = self._db.execute(f"SELECT {_NEXT_REV}").fetchone()[0]
            self._db.executemany(
                "UPDATE sandboxes SET last_used_at=MAX(COALESCE(last_used_at, 0), ?), updated_at=?, rev=? "
                "WHERE sandbox_id=?", [(ts, now, rev, sid) for ts, now, sid in used])

    async def flush_last_used(self, used: dict[str, float]) -> None:
        """Write a batch of last-use times (a stored time only moves forward)."""
        if used:
            now = time.time()
            await self._run(self._flush, [(ts, now, sid) for sid, ts in used.items()])

    # -- leases -----------------------------------------------------------------------------

    def _acquire(self, name: str, holder: str, ttl: float) -> bool:
        now = time.time()
        row = self._db.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "holder=excluded.holder, expires_at=excluded.expires_at "
            "WHERE leases.holder=excluded.holder OR leases.expires_at < ? RETURNING holder",
            (name, holder, now + ttl, now)).fetchone()
        return row is not None

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False while another holder's is unexpired."""
        return await self._run(self._acquire, name, holder, ttl)

    async def release_lease(self, name: str, holder: str) -> None:
        """Drop lease ``name`` if ``holder`` holds it."""
        await self._run(lambda: self._db.execute("DELETE FROM leases WHERE name=? AND holder=?", (name, holder)))

    async def lease_holder(self, name: str) -> str | None:
        """The holder of an unexpired lease ``name``, or None."""
        def get() -> str | None:
            row = self._db.execute("SELECT holder FROM leases WHERE name=? AND expires_at >= ?",
                                   (name, time.time())).fetchone()
            return row[0] if row else None

        return await self._run(get)

    async def claim(self, name: str, owner: str) -> str:
        # the no-op update makes RETURNING give the row that holds the name, ours or not
        """Claim ``name`` for ``owner`` unless it is claimed; the owner that holds it now."""
        return await self._run(lambda: self._db.execute(
            "INSERT INTO claims (name, owner, claimed_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "name=excluded.name RETURNING owner", (name, owner, time.time())).fetchone()[0])

    # -- training instances (rock.training.service): their ids outlive an admin restart ----------

    async def save_instance(self, row: dict) -> None:
        """Store a training instance's id row."""
        await self.write_instances([row], [])

    async def delete_instance(self, instance_id: str) -> None:
        """Forget a training instance's id row."""
        await self.write_instances([], [instance_id])

    def _write_instances(self, rows: list[tuple], deleted: list[tuple]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO training_instances ({','.join(INSTANCE_COLUMNS)}) "
                                 f"VALUES ({','.join('?' for _ in INSTANCE_COLUMNS)})", rows)
            self._db.executemany("DELETE FROM training_instances WHERE instance_id=?", deleted)

    async def write_instances(self, rows: list[dict], deleted: list[str]) -> None:
        """Save rows and delete ids in one transaction."""
        await self._run(self._write_instances, [tuple(r[c] for c in INSTANCE_COLUMNS) for r in rows],
                        [(i,) for i in deleted])

    def _instances(self) -> list[dict]:
        return [dict(r) for r in self._db.execute("SELECT * FROM training_instances ORDER BY created")]

    async def instances(self) -> list[dict]:
        """Every stored training instance row, oldest first."""
        return await self._run(self._instances)
