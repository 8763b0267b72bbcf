"""Persisted sandbox records and their state history, in SQLite (the embedded default).

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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# The state machine: allowed (from, to) transitions. "failed" can be reached from any live state.
TRANSITIONS = {
    "pending": {"running", "failed", "stopped"},
    "running": {"stopped", "failed"},
    "stopped": {"deleted", "pending", "archiving"},  # pending: a restart; archiving: see admin/lifecycle.py
    "archiving": {"archived", "stopped", "deleted"},
    "archived": {"deleted", "pending"},
    "failed": {"deleted", "pending", "stopped"},
    "deleted": {"pending"},
}
LIVE = ("pending", "running")


@dataclass
class SandboxRecord:
    sandbox_id: str
    state: str = "pending"
    owner: str | None = None  # the auth namespace that may touch it; None when auth is off
    namespace: str | None = None
    user_id: str | None = None
    experiment_id: str | None = None
    cluster: str | None = None
    image: str | None = None
    cpus: float | None = None
    memory: str | None = None
    backend: str | None = None
    host_name: str | None = None
    host_ip: str | None = None
    auto_clear_seconds: int | None = None
    spec: dict = field(default_factory=dict)
    failure_reason: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    stopped_at: float | None = None
    deleted_at: float | None = None
    last_used_at: float = field(default_factory=time.time)


_COLUMNS = [f.name for f in fields(SandboxRecord)]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sandboxes (
    sandbox_id TEXT PRIMARY KEY, {", ".join(c for c in _COLUMNS if c != "sandbox_id")}
);
CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sandbox_id TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
    event TEXT NOT NULL, message TEXT, ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_sandbox ON history(sandbox_id, id);
"""


def _row(record: SandboxRecord) -> tuple:
    d = asdict(record)
    d["spec"] = json.dumps(d["spec"])
    return tuple(d[c] for c in _COLUMNS)


def _record(row: sqlite3.Row) -> SandboxRecord:
    d = dict(row)
    d["spec"] = json.loads(d["spec"] or "{}")
    return SandboxRecord(**{c: d.get(c) for c in _COLUMNS})


class Store:
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
        for column in _COLUMNS:  # forward-compatible: new fields become new columns
            if column not in have:
                db.execute(f"ALTER TABLE sandboxes ADD COLUMN {column}")
        self._db = db

    async def open(self) -> None:
        await self._run(self._open)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    # -- records ----------------------------------------------------------------------------

    def _save(self, row: tuple, sandbox_id: str, state: str, from_state: str | None, event: str | None,
              message: str | None) -> None:
        # The row was taken when the write was queued: a later change to the record is a later write.
        assert self._db is not None
        placeholders = ",".join("?" for _ in _COLUMNS)
        with self._db:  # one transaction: the record and its history line agree
            self._db.execute("BEGIN")
            self._db.execute(f"INSERT OR REPLACE INTO sandboxes ({','.join(_COLUMNS)}) VALUES ({placeholders})", row)
            if event is not None:
                self._db.execute(
                    "INSERT INTO history (sandbox_id, from_state, to_state, event, message, ts) VALUES (?,?,?,?,?,?)",
                    (sandbox_id, from_state, state, event, message, time.time()))

    def save(self, record: SandboxRecord, from_state: str | None = None, event: str | None = None,
             message: str | None = None) -> asyncio.Future:
        """Queue the write now (writes happen in call order on the store's thread); await the
        result to know it is on disk."""
        return asyncio.get_running_loop().run_in_executor(self._pool, self._save, _row(record), record.sandbox_id,
                                                          record.state, from_state, event, message)

    def _get(self, sandbox_id: str) -> SandboxRecord | None:
        row = self._db.execute("SELECT * FROM sandboxes WHERE sandbox_id=?", (sandbox_id,)).fetchone()
        return _record(row) if row else None

    async def get(self, sandbox_id: str) -> SandboxRecord | None:
        return await self._run(self._get, sandbox_id)

    def _all(self, include_deleted: bool) -> list[SandboxRecord]:
        sql = "SELECT * FROM sandboxes" + ("" if include_deleted else " WHERE state != 'deleted'")
        return [_record(r) for r in self._db.execute(sql)]

    async def all(self, include_deleted: bool = False) -> list[SandboxRecord]:
        return await self._run(self._all, include_deleted)

    def _history(self, sandbox_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT from_state, to_state, event, message, ts FROM history WHERE sandbox_id=? ORDER BY id",
            (sandbox_id,))
        return [dict(r) for r in rows]

    async def history(self, sandbox_id: str) -> list[dict]:
        return await self._run(self._history, sandbox_id)

    def _flush(self, used: list[tuple[float, str]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE sandboxes SET last_used_at=? WHERE sandbox_id=?", used)

    async def flush_last_used(self, used: dict[str, float]) -> None:
        if used:
            await self._run(self._flush, [(ts, sid) for sid, ts in used.items()])
