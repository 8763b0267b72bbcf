"""The store in PostgreSQL, for several admin and proxy processes serving one cluster.

Writes of this process go through one connection in call order, and whatever queued up while
a transaction ran goes into the next one together (a burst of a thousand creates is a few
transactions, not a thousand). Reads and leases use a small pool beside it. Revisions come
from a sequence and times from the database's clock, so processes on machines whose clocks
disagree still agree on what changed when.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import fields

from rock.jsonutil import dumps
from rock.admin.store import ANY, COLUMNS, INDEXES, INSTANCE_COLUMNS, TEMPLATE_SCHEMA, WRITTEN, SandboxRecord, Store, pg_counts

log = logging.getLogger("rock.store")

_NOW = "extract(epoch from clock_timestamp())"
_BATCH = 500  # writes per transaction at most
_SCHEMA_LOCK = 0x726F636B  # advisory lock id: processes starting together create the schema once


def _sql_type(annotation: str) -> str:
    for name, sql in (("dict", "JSONB"), ("float", "DOUBLE PRECISION"), ("int", "BIGINT")):
        if annotation.startswith(name):
            return sql
    return "TEXT"


_TYPES = {f.name: _sql_type(str(f.type)) for f in fields(SandboxRecord)}
_SCHEMA = [
    "CREATE SEQUENCE IF NOT EXISTS sandbox_rev",
    "CREATE TABLE IF NOT EXISTS sandboxes (sandbox_id TEXT PRIMARY KEY, "
    + ", ".join(f"{c} {_TYPES[c]}" for c in COLUMNS if c != "sandbox_id") + ")",
    *(f"ALTER TABLE sandboxes ADD COLUMN IF NOT EXISTS {c} {_TYPES[c]}" for c in COLUMNS if c != "sandbox_id"),
    # which process wrote the row last (PostgresStore.writer_id): a refresh reads only other processes' writes
    "ALTER TABLE sandboxes ADD COLUMN IF NOT EXISTS writer TEXT",
    "CREATE INDEX IF NOT EXISTS sandboxes_updated ON sandboxes(updated_at)",
    "CREATE INDEX IF NOT EXISTS sandboxes_created ON sandboxes(created_at)",
    "CREATE INDEX IF NOT EXISTS sandboxes_due ON sandboxes(due_at)",
    "CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state)",
    *INDEXES,
    "CREATE TABLE IF NOT EXISTS history (id BIGSERIAL PRIMARY KEY, sandbox_id TEXT NOT NULL, from_state TEXT, "
    "to_state TEXT NOT NULL, event TEXT NOT NULL, message TEXT, ts DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS history_sandbox ON history(sandbox_id, id)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (name TEXT PRIMARY KEY, owner TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS training_instances (instance_id TEXT PRIMARY KEY, owner TEXT, env_type TEXT NOT NULL, "
    "task_id TEXT NOT NULL, handle TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)",
    *TEMPLATE_SCHEMA,
]
# A run of saves is one statement over the rows as one JSON document, not one statement per
# record: psycopg's per-record parameters, messages and result sets were ~13% of the admin's CPU
# in a burst, and its array parameters (unnest) more again. Encoded by orjson (jsonutil): the
# standard library's encoder was ~5 us a record, 8% of the admin's CPU.
_UPSERT = (
    f"INSERT INTO sandboxes ({', '.join(WRITTEN)}, rev, updated_at, writer) SELECT "
    + ", ".join(f"u.{c}::jsonb" if _TYPES[c] == "JSONB" else f"u.{c}" for c in WRITTEN)
    + f", nextval('sandbox_rev'), {_NOW}, %s FROM json_to_recordset(%s::json) AS u("
    + ", ".join(f"{c} {'TEXT' if _TYPES[c] == 'JSONB' else _TYPES[c]}" for c in WRITTEN)
    + ") ON CONFLICT (sandbox_id) DO UPDATE SET "
    + ", ".join(f"{c}=EXCLUDED.{c}" for c in [*WRITTEN, "rev", "updated_at", "writer"] if c != "sandbox_id")
    + " RETURNING sandbox_id, rev"
)
_HISTORY_COLUMNS = ("sandbox_id", "from_state", "to_state", "event", "message")
_HISTORY = (f"INSERT INTO history ({', '.join(_HISTORY_COLUMNS)}, ts) SELECT {', '.join('u.' + c for c in _HISTORY_COLUMNS)}, "
            f"{_NOW} FROM ROWS FROM (json_to_recordset(%s::json) AS ({', '.join(c + ' TEXT' for c in _HISTORY_COLUMNS)})) "
            f"WITH ORDINALITY AS u({', '.join(_HISTORY_COLUMNS)}, n) ORDER BY u.n")
_TOUCH = (f"UPDATE sandboxes SET last_used_at=GREATEST(COALESCE(last_used_at, 0), %s), rev=nextval('sandbox_rev'), "
          f"updated_at={_NOW}, writer=%s WHERE sandbox_id=%s")


_SID = WRITTEN.index("sandbox_id")


def _text(value) -> str:
    return dumps(value).decode()


def _record(row: dict) -> SandboxRecord:
    d = dict(row)
    d["spec"] = d.get("spec") or {}
    d["rev"] = d.get("rev") or 0
    d["updated_at"] = d.get("updated_at") or 0.0
    return SandboxRecord(**{c: d.get(c) for c in COLUMNS})


class PostgresStore(Store):
    """The store in PostgreSQL, shared by several admin and proxy processes: one writer connection batches
    this process's writes, a small pool serves reads and leases."""

    shared = True

    def __init__(self, url: str):
        self.url = url
        self._queue: asyncio.Queue | None = None
        self._writer: asyncio.Task | None = None
        self._pool = None
        # This process's name on the rows it writes: a refresh reads back only other processes'
        # writes (reading its own, each five times over the look-back, was ~7% of the admin's CPU
        # in a burst, and its garbage more).
        self.writer_id = uuid.uuid4().hex

    async def open(self) -> None:
        """Connect (a clear error names a database that cannot be reached), make the schema once across
        processes, and start the writer."""
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(self.url, min_size=1, max_size=8, open=False,
                                         kwargs={"autocommit": True, "row_factory": dict_row})
        try:
            await self._pool.open(wait=True, timeout=15)
        except Exception as exc:  # noqa: BLE001 - say which database could not be reached
            await self._pool.close()
            raise RuntimeError(f"cannot connect to PostgreSQL at {_redact(self.url)}: {exc}") from None
        async with self._pool.connection() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                await db.execute(statement)
            await pg_counts.create(db)
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="rock-store-writer")

    async def close(self) -> None:
        """Let the writer finish what is queued, then close the connections."""
        if self._writer is not None:
            await self._queue.put(None)
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- writes: one ordered, batching writer -------------------------------------------------

    def _enqueue(self, op: tuple) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    def save(self, record: SandboxRecord, from_state: str | None = None, event: str | None = None,
             message: str | None = None) -> asyncio.Future:
        # The fields as they are now (the write lands later); the spec as JSON text now, which is
        # also its copy (dataclasses.asdict's deep copy was ~7% of the admin's CPU in a burst).
        """Queue the record's write for the writer (this process's writes land in call order); the future
        gives its revision."""
        row = tuple(_text(record.spec) if c == "spec" else getattr(record, c) for c in WRITTEN)
        history = None if event is None else (record.sandbox_id, from_state, record.state, event, message)
        return self._enqueue(("save", row, history))

    async def flush_last_used(self, used: dict[str, float]) -> None:
        """Queue a batch of last-use times for the writer (a stored time only moves forward)."""
        if used:
            await self._enqueue(("touch", [(ts, self.writer_id, sid) for sid, ts in used.items()], None))

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < _BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            try:
                results = await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - each waiting caller gets the error
                log.error("PostgreSQL write of %d record(s) failed: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def _write(self, batch: list) -> list:
        """One transaction; each run of saves is two statements (``_save_run``), not two per record:
        a burst of creates was bound by the database's round trips, then by psycopg's per-record work."""
        results = []
        async with self._pool.connection() as db, db.transaction(), db.cursor() as cur:
            i = 0
            while i < len(batch):
                (kind, payload, _), _ = batch[i]
                if kind != "save":
                    await cur.executemany(_TOUCH, payload)
                    results.append(None)
                    i += 1
                    continue
                run = []
                while i < len(batch) and batch[i][0][0] == "save":
                    run.append(batch[i][0])
                    i += 1
                results += await self._save_run(cur, run)
        return results

    async def _save_run(self, cur, run: list) -> list[int]:
        """Saves in call order as one upsert and one history insert; the revision of each. A record
        saved twice in the run is written once, as its last save says (one statement may not
        update a row twice); both of its saves get that revision, and its history keeps both."""
        last = {row[_SID]: row for _, row, _ in run}
        await cur.execute(_UPSERT, (self.writer_id, _text([dict(zip(WRITTEN, row)) for row in last.values()])))
        revs = {r["sandbox_id"]: r["rev"] for r in await cur.fetchall()}
        history = [dict(zip(_HISTORY_COLUMNS, h)) for _, _, h in run if h is not None]
        if history:
            await cur.execute(_HISTORY, (_text(history),))
        return [revs[row[_SID]] for _, row, _ in run]

    # -- reads --------------------------------------------------------------------------------

    async def _fetch(self, sql: str, args: tuple = ()) -> list[dict]:
        async with self._pool.connection() as db:
            return await (await db.execute(sql, args)).fetchall()

    async def get(self, sandbox_id: str) -> SandboxRecord | None:
        """The record of ``sandbox_id`` (deleted ones included), or None."""
        rows = await self._fetch("SELECT * FROM sandboxes WHERE sandbox_id=%s", (sandbox_id,))
        return _record(rows[0]) if rows else None

    async def all(self, include_deleted: bool = False) -> list[SandboxRecord]:
        """Every record, the deleted ones only with ``include_deleted``."""
        sql = "SELECT * FROM sandboxes" + ("" if include_deleted else " WHERE state != 'deleted'")
        return [_record(r) for r in await self._fetch(sql)]

    async def changed_since(self, since: float) -> tuple[list[SandboxRecord], float]:
        """As the base says, less the rows whose last write was this process's own (it holds them)."""
        async with self._pool.connection() as db:
            now = (await (await db.execute(f"SELECT {_NOW} AS now")).fetchone())["now"]
            rows = await (await db.execute("SELECT * FROM sandboxes WHERE updated_at >= %s AND writer IS DISTINCT FROM %s",
                                           (since, self.writer_id))).fetchall()
        return [_record(r) for r in rows], float(now)

    PH = "%s"

    async def _records(self, sql: str, args: tuple) -> list[SandboxRecord]:
        return [_record(r) for r in await self._fetch(sql, args)]

    async def _rows(self, sql: str, args: tuple) -> list[dict]:
        return await self._fetch(sql, args)

    # -- counts, kept by the database (pg_counts) -------------------------------------------------

    async def counts(self, owner=ANY) -> list[dict]:
        """How many records of each state, backend and node, from the kept counts rather than a scan."""
        where, args = self._where(owner)
        return await self._fetch(f"SELECT state, backend, node_id, SUM(n)::bigint AS n FROM sandbox_counts{where} "
                                 "GROUP BY state, backend, node_id HAVING SUM(n) != 0", tuple(args))

    async def _total(self, owner, states: tuple | None, exclude_deleted: bool) -> int:
        where, args = self._where(owner, None, states, exclude_deleted)
        return (await self._fetch(f"SELECT COALESCE(SUM(n), 0)::bigint AS n FROM sandbox_counts{where}", tuple(args)))[0]["n"]

    async def fold_counts(self) -> None:
        """Fold the kept counts' rows into one per owner, state, backend and node (the reaper-lease holder
        does it now and then)."""
        async with self._pool.connection() as db, db.transaction():
            await db.execute(pg_counts.FOLD)

    async def history(self, sandbox_id: str) -> list[dict]:
        """The state transitions of ``sandbox_id``, oldest first."""
        return await self._fetch("SELECT from_state, to_state, event, message, ts FROM history "
                                 "WHERE sandbox_id=%s ORDER BY id", (sandbox_id,))

    # -- leases -------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds by the database's clock; False while another
        holder's is unexpired."""
        rows = await self._fetch(
            f"INSERT INTO leases (name, holder, expires_at) VALUES (%s, %s, {_NOW} + %s) ON CONFLICT (name) DO UPDATE "
            "SET holder=EXCLUDED.holder, expires_at=EXCLUDED.expires_at "
            f"WHERE leases.holder=EXCLUDED.holder OR leases.expires_at < {_NOW} RETURNING holder",
            (name, holder, ttl))
        return bool(rows)

    async def release_lease(self, name: str, holder: str) -> None:
        """Drop lease ``name`` if ``holder`` holds it."""
        await self._fetch("DELETE FROM leases WHERE name=%s AND holder=%s RETURNING name", (name, holder))

    async def lease_holder(self, name: str) -> str | None:
        """The holder of an unexpired lease ``name``, or None."""
        rows = await self._fetch(f"SELECT holder FROM leases WHERE name=%s AND expires_at >= {_NOW}", (name,))
        return rows[0]["holder"] if rows else None

    async def claim(self, name: str, owner: str) -> str:
        # the no-op update makes RETURNING give the row that holds the name, ours or not
        """Claim ``name`` for ``owner`` unless it is claimed; the owner that holds it now."""
        rows = await self._fetch(f"INSERT INTO claims (name, owner, claimed_at) VALUES (%s, %s, {_NOW}) ON CONFLICT (name) "
                                 "DO UPDATE SET name=EXCLUDED.name RETURNING owner", (name, owner))
        return rows[0]["owner"]

    # -- training instances -------------------------------------------------------------------

    async def save_instance(self, row: dict) -> None:
        """Store a training instance's id row."""
        await self._fetch(f"INSERT INTO training_instances ({', '.join(INSTANCE_COLUMNS)}) VALUES "
                          f"({', '.join('%s' for _ in INSTANCE_COLUMNS)}) ON CONFLICT (instance_id) DO UPDATE SET "
                          + ", ".join(f"{c}=EXCLUDED.{c}" for c in INSTANCE_COLUMNS[1:]) + " RETURNING instance_id",
                          tuple(row[c] for c in INSTANCE_COLUMNS))

    async def delete_instance(self, instance_id: str) -> None:
        """Forget a training instance's id row."""
        await self._fetch("DELETE FROM training_instances WHERE instance_id=%s RETURNING instance_id", (instance_id,))

    async def instances(self) -> list[dict]:
        """Every stored training instance row, oldest first."""
        return await self._fetch("SELECT * FROM training_instances ORDER BY created")

def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{tail}"
