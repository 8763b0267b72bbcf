"""Persisted sandbox records, their state history and the leases between admin processes.

One interface (``Store``) with two implementations: SQLite (``sqlite.py``, the embedded default:
one machine, one admin, maybe a proxy beside it) and PostgreSQL (``postgres.py``: several admin
and proxy processes on several machines share one cluster's state). Everything above this
module is one code path.

Every write gives the row a new revision (``rev``) and the database's time (``updated_at``):
a process that caches records (all of them do: the hot path reads memory) pulls what others
changed with ``changed_since`` and keeps whichever copy has the higher revision.
"""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass, field, fields

# The state machine: allowed (from, to) transitions. "failed" can be reached from any live state;
# "lost" is a running sandbox whose node went away (it comes back to "running" if the node does).
TRANSITIONS = {
    "pending": {"running", "failed", "stopped"},
    "running": {"stopped", "failed", "lost", "paused"},
    # paused: its processes frozen in memory (admin/sandboxes/snapshots.py); a resume makes it running again
    "paused": {"running", "stopped", "failed", "lost"},
    "lost": {"running", "stopped", "failed", "deleted"},
    "stopped": {"deleted", "pending", "archiving"},  # pending: a restart; archiving: see admin/sandboxes/lifecycle.py
    "archiving": {"archived", "stopped", "deleted"},
    "archived": {"deleted", "pending"},
    "failed": {"deleted", "pending", "stopped"},
    "deleted": {"pending"},
}
LIVE = ("pending", "running", "paused")
# What the admin keeps in memory: sandboxes that run or may run again on their own (a lost node's
# come back), and archives in progress. Every other record (stopped, archived, failed, deleted)
# is read from the store when asked for, so the admin's memory does not grow with every sandbox
# it ever made.
HELD = (*LIVE, "lost", "archiving")
_MAX_ROWS = 1 << 62
ANY = object()  # "any owner" (None is an owner: the one namespace when tokens are off)
INSTANCE_COLUMNS = ("instance_id", "owner", "env_type", "task_id", "handle", "created")
# Templates (rock.admin.templates): one row per template, its builds, tags and logs as one JSON
# document (``doc``); ``stamp`` changes on every write, so a process re-reads only the documents
# that changed. A first build that failed is a row of its own (``failed``, keyed by its build id):
# its status stays readable for its builder, and it is no template.
TEMPLATE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS templates (template_id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, "
    "failed INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL, stamp TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS templates_live ON templates(failed, template_id, stamp)",
    # a build's uploaded files (COPY's tar, by hash, per namespace), where several admins share the store:
    # the admin that runs a build may not be the one that received its upload
    "CREATE TABLE IF NOT EXISTS template_files (owner_key TEXT NOT NULL, files_hash TEXT NOT NULL, "
    "data BYTEA NOT NULL, PRIMARY KEY (owner_key, files_hash))",
]


@dataclass
class SandboxRecord:
    """One sandbox as the admin persists it: its state and owner, its labels and spec, where it runs, and
    its timers (TTL, last use, next timed transition)."""

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
    node_id: str | None = None  # the cluster node that runs it (None: the embedded worker)
    auto_clear_seconds: int | None = None
    spec: dict = field(default_factory=dict)
    failure_reason: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    stopped_at: float | None = None
    deleted_at: float | None = None
    last_used_at: float = field(default_factory=time.time)
    due_at: float | None = None  # when a stopped or archived sandbox is next archived or deleted (lifecycle)
    rev: int = 0  # set by the store on every write
    updated_at: float = 0.0  # the database's clock at the last write


COLUMNS = [f.name for f in fields(SandboxRecord)]
# Indexes both databases keep for the reads over many records, so that they are answered from an
# index alone at 100,000 records: a listing's page (a namespace's records in creation order, with
# the state it filters on) and the counts by state (a listing's total, the UI's overview, metrics).
INDEXES = [
    "CREATE INDEX IF NOT EXISTS sandboxes_page ON sandboxes(owner, created_at, sandbox_id, state)",
    "CREATE INDEX IF NOT EXISTS sandboxes_counts ON sandboxes(owner, state, backend, node_id)",
    # the filters a trainer lists by: its user and its experiment
    "CREATE INDEX IF NOT EXISTS sandboxes_user ON sandboxes(owner, user_id, created_at)",
    "CREATE INDEX IF NOT EXISTS sandboxes_experiment ON sandboxes(owner, experiment_id, created_at)",
]
# Columns a caller's save writes; the store assigns the others.
WRITTEN = [c for c in COLUMNS if c not in ("rev", "updated_at")]


class Store(abc.ABC):
    """What the admin keeps across restarts and shares between processes."""

    shared: bool = False  # several processes (maybe on several machines) write it

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the database (made and migrated where needed)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the database; writes queued before it land first."""

    @abc.abstractmethod
    def save(self, record: SandboxRecord, from_state: str | None = None, event: str | None = None,
             message: str | None = None) -> asyncio.Future:
        """Queue the write now (writes of one process land in call order); the future resolves
        to the new revision once it is stored. The record's fields are read at call time."""

    @abc.abstractmethod
    async def get(self, sandbox_id: str) -> SandboxRecord | None:
        """The record of ``sandbox_id`` (deleted ones included), or None."""

    @abc.abstractmethod
    async def all(self, include_deleted: bool = False) -> list[SandboxRecord]:
        """Every record (the deleted ones only with ``include_deleted``)."""

    @abc.abstractmethod
    async def changed_since(self, since: float) -> tuple[list[SandboxRecord], float]:
        """Records written at or after ``since`` (the database's clock), and the database's time now."""

    @abc.abstractmethod
    async def history(self, sandbox_id: str) -> list[dict]:
        """The state transitions of ``sandbox_id``, oldest first."""

    # -- reads over many records (listing, counts, timers): one SQL for both databases --------------

    PH = "?"  # the driver's placeholder

    @abc.abstractmethod
    async def _records(self, sql: str, args: tuple) -> list[SandboxRecord]: ...

    @abc.abstractmethod
    async def _rows(self, sql: str, args: tuple) -> list[dict]: ...

    async def get_many(self, sandbox_ids: list[str]) -> list[SandboxRecord]:
        """The records of those ids that exist, in one query per 500 ids (SQLite's variable limit)."""
        found = []
        for i in range(0, len(sandbox_ids), 500):
            chunk = sandbox_ids[i:i + 500]
            found += await self._records(f"SELECT * FROM sandboxes WHERE sandbox_id IN ({', '.join(self.PH for _ in chunk)})",
                                         tuple(chunk))
        return found

    def _where(self, owner=ANY, filters: dict | None = None, states: tuple | None = None,
               exclude_deleted: bool = False) -> tuple[str, list]:
        clauses, args = [], []
        if owner is not ANY:
            clauses.append("owner IS NULL" if owner is None else f"owner = {self.PH}")
            args += [] if owner is None else [owner]
        for column, value in (filters or {}).items():
            if value is not None:
                assert column in COLUMNS
                clauses.append(f"{column} = {self.PH}")
                args.append(value)
        if states is not None:
            clauses.append(f"state IN ({', '.join(self.PH for _ in states)})")
            args += list(states)
        if exclude_deleted:
            clauses.append("state != 'deleted'")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    async def query(self, owner=ANY, filters: dict | None = None, states: tuple | None = None,
                    exclude_deleted: bool = False, newest_first: bool = False, offset: int = 0,
                    limit: int | None = None) -> tuple[list[SandboxRecord], int]:
        """One page of the records that match, oldest first (or newest), and how many match."""
        where, args = self._where(owner, filters, states, exclude_deleted)
        given = {k: v for k, v in (filters or {}).items() if v is not None}
        if set(given) - {"state"}:
            total = (await self._rows(f"SELECT COUNT(*) AS n FROM sandboxes{where}", tuple(args)))[0]["n"]
        else:  # no filter but the state: the kept counts where the store keeps them
            only = (given["state"],) if given else None
            wanted = only if states is None else tuple(set(states) & set(only or states))
            total = 0 if wanted == () else await self._total(owner, wanted, exclude_deleted)
        # "owner IS NULL" does not tell PostgreSQL's planner that owner is one value, as "=" would:
        # naming it first lets the page be read in the order of the index that starts with it. Every
        # column in one direction: newest first is that index read backwards (with the tie-break
        # ascending, the UI's first page sorted every matching record: ~25 ms of the database's
        # CPU at 100,000).
        way = "DESC" if newest_first else "ASC"
        order = f" ORDER BY {f'owner {way}, ' if owner is None else ''}created_at {way}, sandbox_id {way}"
        if limit is None:
            return await self._records(f"SELECT * FROM sandboxes{where}{order}", tuple(args)), total
        # a page past any table (page=10**21) is an empty one, not a 64-bit overflow
        page = f"{order} LIMIT {min(int(limit), _MAX_ROWS)} OFFSET {min(int(offset), _MAX_ROWS)}"
        # The page's ids first (walked in the index ``sandboxes_page``, however deep the offset),
        # then only those rows: a deep page read every row it skipped.
        return await self._records(f"SELECT * FROM sandboxes WHERE sandbox_id IN (SELECT sandbox_id FROM sandboxes"
                                   f"{where}{page}){order}", tuple(args)), total

    async def _total(self, owner, states: tuple | None, exclude_deleted: bool) -> int:
        """How many records of ``owner`` (in ``states``; not deleted): what a listing without filters says."""
        where, args = self._where(owner, None, states, exclude_deleted)
        return (await self._rows(f"SELECT COUNT(*) AS n FROM sandboxes{where}", tuple(args)))[0]["n"]

    async def fold_counts(self) -> None:
        """Housekeeping of kept counts, where a store keeps them (the reaper-lease holder calls it)."""

    async def counts(self, owner=ANY) -> list[dict]:
        """Rows of ``state``, ``backend``, ``node_id``, ``n``: how many records of each."""
        where, args = self._where(owner)
        return await self._rows(f"SELECT state, backend, node_id, COUNT(*) AS n FROM sandboxes{where} "
                                "GROUP BY state, backend, node_id", tuple(args))

    async def distinct(self, column: str, owner=ANY) -> list[str]:
        """The distinct values of ``column`` among ``owner``'s records (for the listing's filters)."""
        assert column in COLUMNS
        where, args = self._where(owner)
        rows = await self._rows(f"SELECT DISTINCT {column} AS v FROM sandboxes{where}", tuple(args))
        return sorted(r["v"] for r in rows if r["v"])

    async def due(self, now: float) -> list[SandboxRecord]:
        """Stopped or archived records whose next timed transition is due."""
        return await self._records(f"SELECT * FROM sandboxes WHERE due_at <= {self.PH} ORDER BY due_at", (now,))

    async def next_due(self) -> float | None:
        """When the next timed transition is due (None when none is)."""
        return (await self._rows("SELECT MIN(due_at) AS t FROM sandboxes", ()))[0]["t"]

    @abc.abstractmethod
    async def flush_last_used(self, used: dict[str, float]) -> None:
        """Record uses in one batch; a stored time is only ever moved forward."""

    @abc.abstractmethod
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False while another holder's is unexpired."""

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """Let lease ``name`` go, if ``holder`` holds it."""

    @abc.abstractmethod
    async def lease_holder(self, name: str) -> str | None:
        """Who holds lease ``name`` now (None when nobody holds an unexpired one)."""

    @abc.abstractmethod
    async def claim(self, name: str, owner: str) -> str:
        """Claim ``name`` (an image tag, ...) for ``owner`` unless it is claimed already, in one
        statement: returns the owner that holds it now (``owner`` when this call took it, or
        held it before). Claims are kept: the first namespace to take a name keeps it."""

    # Training instances (rock.training.service): rows of INSTANCE_COLUMNS, so that a restarted
    # admin serves the instance ids it handed out.
    @abc.abstractmethod
    async def save_instance(self, row: dict) -> None:
        """Store a training instance's id row (it survives an admin restart)."""

    @abc.abstractmethod
    async def delete_instance(self, instance_id: str) -> None:
        """Forget a training instance's id row."""

    @abc.abstractmethod
    async def instances(self) -> list[dict]:
        """Every stored training instance row."""

    # Templates: the same SQL on both databases (writes say RETURNING: psycopg fetches every statement's rows).

    async def save_template(self, key: str, owner: str, name: str, doc: str, stamp: str, failed: bool = False,
                            keep_failed: int = 1000) -> None:
        """Write a template's row (a failed first build's with ``failed``; only the newest
        ``keep_failed`` of those are kept)."""
        ph = self.PH
        await self._rows(f"INSERT INTO templates (template_id, owner, name, failed, doc, stamp, updated_at) VALUES "
                         f"({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}) ON CONFLICT (template_id) DO UPDATE SET "
                         "owner=EXCLUDED.owner, name=EXCLUDED.name, failed=EXCLUDED.failed, doc=EXCLUDED.doc, "
                         "stamp=EXCLUDED.stamp, updated_at=EXCLUDED.updated_at RETURNING template_id",
                         (key, owner, name, int(failed), doc, stamp, time.time()))
        if failed:
            await self._rows(f"DELETE FROM templates WHERE failed = 1 AND template_id NOT IN (SELECT template_id FROM "
                             f"templates WHERE failed = 1 ORDER BY updated_at DESC LIMIT {int(keep_failed)}) "
                             "RETURNING template_id", ())

    async def delete_template(self, key: str) -> None:
        """Forget a template's row."""
        await self._rows(f"DELETE FROM templates WHERE template_id = {self.PH} RETURNING template_id", (key,))

    async def template_stamps(self) -> dict[str, str]:
        """Every template's key and stamp (failed first builds aside): what a process compares its copies with."""
        return {r["template_id"]: r["stamp"] for r in
                await self._rows("SELECT template_id, stamp FROM templates WHERE failed = 0", ())}

    async def template_rows(self, keys: list[str]) -> list[dict]:
        """The rows of those keys that exist (failed first builds' too)."""
        found: list[dict] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            found += await self._rows(f"SELECT template_id, owner, name, failed, doc, stamp FROM templates WHERE "
                                      f"template_id IN ({', '.join(self.PH for _ in chunk)})", tuple(chunk))
        return found

    async def save_template_file(self, owner_key: str, files_hash: str, data: bytes) -> None:
        """Keep an upload (one already kept by that hash stays as it is)."""
        await self._rows(f"INSERT INTO template_files (owner_key, files_hash, data) VALUES ({self.PH}, {self.PH}, "
                         f"{self.PH}) ON CONFLICT (owner_key, files_hash) DO NOTHING RETURNING files_hash",
                         (owner_key, files_hash, data))

    async def template_file(self, owner_key: str, files_hash: str, data: bool = True) -> bytes | None:
        """A kept upload's bytes (with ``data=False``: empty bytes when it is kept), or None."""
        rows = await self._rows(f"SELECT {'data' if data else 'files_hash'} AS v FROM template_files WHERE "
                                f"owner_key = {self.PH} AND files_hash = {self.PH}", (owner_key, files_hash))
        return (bytes(rows[0]["v"]) if data else b"") if rows else None

    async def write_instances(self, rows: list[dict], deleted: list[str]) -> None:
        """Several saves, then several deletes; a store may make them one transaction."""
        for row in rows:
            await self.save_instance(row)
        for instance_id in deleted:
            await self.delete_instance(instance_id)


__all__ = ["ANY", "COLUMNS", "HELD", "INDEXES", "LIVE", "TEMPLATE_SCHEMA", "TRANSITIONS", "WRITTEN", "SandboxRecord", "Store"]
