"""Where a client finds the admin: its URL, its token, extra headers and timeouts, resolved once.

An explicit value wins; else ``ROCK_BASE_URL`` and ``ROCK_TOKEN``; else ``http://localhost:8080``
and no token. Every client of the admin (the SDK, the env clients, the trainer, the CLI, the
agentic jobs) resolves them here, so they agree on the defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_URL = "http://localhost:8080"
TIMEOUT = 600.0  # seconds a call may wait for its answer unless the caller says otherwise
CONNECT_TIMEOUT = 30.0


def resolve_url(explicit: str | None = None) -> str:
    """The admin's URL: ``explicit``, else ``$ROCK_BASE_URL``, else ``http://localhost:8080``."""
    return explicit or os.environ.get("ROCK_BASE_URL") or DEFAULT_URL


def resolve_token(explicit: str | None = None) -> str | None:
    """The API token: ``explicit``, else ``$ROCK_TOKEN``, else None (an open admin on loopback)."""
    return explicit or os.environ.get("ROCK_TOKEN") or None


def auth_headers(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header a token travels in (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True)
class ClientConfig:
    """One admin as a client sees it; ``resolve`` fills what the caller leaves out."""

    base_url: str
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent on every request (namespace, user, ...)
    read_timeout: float | None = TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT

    @classmethod
    def resolve(cls, base_url: str | None = None, token: str | None = None, headers: dict[str, str] | None = None,
                read_timeout: float | None = TIMEOUT) -> "ClientConfig":
        """The configuration from explicit values, the environment and the defaults, in that order."""
        return cls(resolve_url(base_url).rstrip("/"), resolve_token(token), dict(headers or {}), read_timeout)

    def all_headers(self) -> dict[str, str]:
        """The token's header and the extra headers (an explicit ``Authorization`` among them wins)."""
        return {**auth_headers(self.token), **self.headers}
