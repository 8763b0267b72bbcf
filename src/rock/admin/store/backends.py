"""Which store an admin opens: the URL selects the backend. Above the backends, which import the
records and the interface from the package."""

from __future__ import annotations

from pathlib import Path

from rock.admin.store import Store
from rock.admin.store.sqlite import SqliteStore


def open_store(url: str | None, state_dir) -> Store:
    """``postgresql://…`` selects PostgreSQL; anything else (or nothing) is SQLite in ``state_dir``."""
    if url and url.startswith(("postgres://", "postgresql://")):
        from rock.admin.store.postgres import PostgresStore  # psycopg is an optional dependency

        return PostgresStore(url)
    return SqliteStore(Path(url) if url else Path(state_dir) / "admin.db")
