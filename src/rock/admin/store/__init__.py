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
    "running": {"stopped", "failed", "lost"},
    "lost": {"running", "stopped", "failed", "deleted"},
    "stopped": {"deleted", "pending", "archiving"},  # pending: a restart; archiving: see admin/lifecycle.py
    "archiving": {"archived", "stopped", "deleted"},
    "archived": {"deleted", "pending"},
    "failed": {"deleted", "pending", "stopped"},
    "deleted": {"pending"},
}
LIVE = ("pending", "running")
INSTANCE_COLUMNS = ("instance_id", "owner", "env_type", "task_id", "handle", "created")


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
    node_id: str | None = None  # the cluster node that runs it (None: the embedded worker)
    auto_clear_seconds: int | None = None
    spec: dict = field(default_factory=dict)
    failure_reason: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    stopped_at: float | None = None
    deleted_at: float | None = None
    last_used_at: float = field(default_factory=time.time)
    rev: int = 0  # set by the store on every write
    updated_at: float = 0.0  # the database's clock at the last write


COLUMNS = [f.name for f in fields(SandboxRecord)]
# Columns a caller's save writes; the store assigns the others.
WRITTEN = [c for c in COLUMNS if c not in ("rev", "updated_at")]


class Store(abc.ABC):
    """What the admin keeps across restarts and shares between processes."""

    shared: bool = False  # several processes (maybe on several machines) write it

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def save(self, record: SandboxRecord, from_state: str | None = None, event: str | None = None,
             message: str | None = None) -> asyncio.Future:
        """Queue the write now (writes of one process land in call order); the future resolves
        to the new revision once it is stored. The record's fields are read at call time."""

    @abc.abstractmethod
    async def get(self, sandbox_id: str) -> SandboxRecord | None: ...

    @abc.abstractmethod
    async def all(self, include_deleted: bool = False) -> list[SandboxRecord]: ...

    @abc.abstractmethod
    async def changed_since(self, since: float) -> tuple[list[SandboxRecord], float]:
        """Records written at or after ``since`` (the database's clock), and the database's time now."""

    @abc.abstractmethod
    async def history(self, sandbox_id: str) -> list[dict]: ...

    @abc.abstractmethod
    async def flush_last_used(self, used: dict[str, float]) -> None:
        """Record uses in one batch; a stored time is only ever moved forward."""

    @abc.abstractmethod
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False while another holder's is unexpired."""

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None: ...

    @abc.abstractmethod
    async def lease_holder(self, name: str) -> str | None: ...

    # Training instances (rock.training.service): rows of INSTANCE_COLUMNS, so that a restarted
    # admin serves the instance ids it handed out.
    @abc.abstractmethod
    async def save_instance(self, row: dict) -> None: ...

    @abc.abstractmethod
    async def delete_instance(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    async def instances(self) -> list[dict]: ...


def open_store(url: str | None, state_dir) -> Store:
    """``postgresql://…`` selects PostgreSQL; anything else (or nothing) is SQLite in ``state_dir``."""
    if url and url.startswith(("postgres://", "postgresql://")):
        from rock.admin.store.postgres import PostgresStore

        return PostgresStore(url)
    from pathlib import Path

    from rock.admin.store.sqlite import SqliteStore

    return SqliteStore(Path(url) if url else Path(state_dir) / "admin.db")


__all__ = ["COLUMNS", "LIVE", "TRANSITIONS", "WRITTEN", "SandboxRecord", "Store", "open_store"]
