"""The admin's clients as the SDK, the env clients and the trainer use them, over the one pair of
transports (``rock.client.pools``) and the one decoder (``rock.client.envelope``).

``Http``: ROCK's enveloped routes (sandboxes, chat, images), async. ``AsyncHttp`` and
``SyncHttp``: the env and training routes, which answer raw bodies; ``post`` raises a failed
answer as its ``EnvError`` (or envelope type), ``exchange`` hands back status and body.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from rock.client.config import TIMEOUT, ClientConfig
from rock.client.envelope import dumps, raise_for, unwrap_bytes
from rock.client.pools import AsyncPool, SyncPool

PREFIX = "/apis/envs/sandbox/v1"  # ROCK's sandbox routes
GEM = "/apis/v1/envs/gem"  # the GEM env routes


def unwrap(response: httpx.Response) -> Any:
    """The ``result`` of ROCK's envelope, or the SDK's error type raised from a failed answer."""
    return unwrap_bytes(response.status_code, response.content)


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class Http:
    """One pooled client per SDK object for ROCK's enveloped routes under ``prefix``: JSON posts to
    a plain ``http://`` admin take the byte-level fast path; streams, uploads and https go through
    ``client`` (httpx over the same pool). ``transport``: any ``httpx.AsyncBaseTransport`` (as
    ``httpx.AsyncClient`` takes one), which then carries every call; closed with this client."""

    def __init__(self, base_url: str, headers: dict[str, str], read_timeout: float | None, prefix: str = PREFIX,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.config = ClientConfig(base_url.rstrip("/"), None, dict(headers), read_timeout)
        self.pool = AsyncPool(self.config, prefix, transport=transport)
        self.base, self.headers, self.read_timeout = self.pool.base, headers, read_timeout
        self.transport = self.pool.transport

    @classmethod
    def for_config(cls, config: Any, transport: httpx.AsyncBaseTransport | None = None) -> "Http":
        """A client for the admin a ``SandboxConfig`` names: its URL, its headers
        (``SandboxConfig.headers()``) and its read timeout; ``transport`` as in ``Http``."""
        return cls(config.base_url, config.headers(), config.request_timeout, transport=transport)

    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client (over the same pool) for streams, uploads and other methods."""
        return self.pool.client

    async def post(self, path: str, body: dict[str, Any], timeout: Any = httpx.USE_CLIENT_DEFAULT) -> Any:
        """POST ``body`` as JSON to ``path`` under the prefix; the envelope's result."""
        return unwrap_bytes(*await self.pool.send(path, dumps(body), timeout))

    async def get(self, path: str, params: dict[str, Any]) -> Any:
        """GET ``path`` with query ``params``; the envelope's result."""
        return unwrap(await self.client.get(path, params=_present(params)))

    async def delete(self, path: str) -> Any:
        """DELETE ``path``; the envelope's result."""
        return unwrap(await self.client.delete(path))

    async def raw_get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        """GET ``path`` for bytes (errors raised as with ``get``)."""
        response = await self.client.get(path, params=_present(params))
        if response.status_code >= 400:
            unwrap(response)
        return response

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.pool.aclose()


class AsyncHttp:
    """Async keep-alive HTTP to the env or training routes under ``routes`` (one pool per object).
    ``transport``: any ``httpx.AsyncBaseTransport`` (as ``httpx.AsyncClient`` takes one), which
    then carries every call; closed with this client."""

    def __init__(self, base_url: str | None = None, token: str | None = None, routes: str = GEM,
                 max_connections: int = 64, transport: httpx.AsyncBaseTransport | None = None):
        self.config = ClientConfig.resolve(base_url, token)
        self.base, self.token, self.routes = self.config.base_url, self.config.token, routes
        self.max_connections = max_connections
        self.pool = AsyncPool(self.config, routes, max_connections, transport=transport)
        self.transport = self.pool.transport
        self._given = transport

    def twin(self) -> "AsyncHttp":
        """A pool of its own to the same admin with the same token (for an object that closes its
        pool, such as a forked vector env); a transport the caller gave is the twin's too."""
        return AsyncHttp(self.base, self.token, self.routes, self.max_connections, transport=self._given)

    async def post(self, path: str, body: dict[str, Any]) -> bytes:
        """POST ``body`` as JSON to the route ``path``; the raw answer, or the error it maps to raised."""
        status, raw = await self.exchange(path, body)
        if status >= 400:
            raise_for(status, raw)
        return raw

    async def exchange(self, path: str, body: dict[str, Any], timeout: float | None = TIMEOUT) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``routes + path``: (status, body), errors included."""
        # the standard library's encoder: env actions may carry NaN, which orjson would send as null
        return await self.pool.send(path, json.dumps(body, separators=(",", ":")).encode(), timeout)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.pool.aclose()


class SyncHttp:
    """Blocking keep-alive HTTP to the env or training routes under ``routes``: one connection per
    thread and admin, or ``transport`` (any ``httpx.BaseTransport``) when one is given."""

    def __init__(self, base_url: str | None = None, token: str | None = None, routes: str = GEM,
                 timeout: float = TIMEOUT, transport: httpx.BaseTransport | None = None):
        self.config = ClientConfig.resolve(base_url, token, read_timeout=timeout)
        self.base, self.timeout = self.config.base_url, timeout
        self.pool = SyncPool(self.config, routes, transport=transport)

    def post(self, path: str, body: dict[str, Any]) -> bytes:
        """POST ``body`` as JSON to the route ``path``; the raw answer, or the error it maps to raised."""
        status, raw = self.exchange(path, body)
        if status >= 400:
            raise_for(status, raw)
        return raw

    def exchange(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``routes + path``: (status, body), errors included."""
        return self.pool.send("POST", path, json.dumps(body, separators=(",", ":")).encode())

    def close(self) -> None:
        """Close this thread's connection to the admin."""
        self.pool.close()
