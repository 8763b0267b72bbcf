"""The two transports every client of the admin goes through: ``AsyncPool`` (asyncio) and
``SyncPool`` (blocking), each with its httpx client for what is not a small JSON call.

Small JSON calls to a plain ``http://`` admin take a byte-level fast path (measured here, httpx's
per-request work alone costs about as much as the admin's whole round trip): async over
``LeanTransport``'s pool, blocking over ``sync_transport.SyncTransport``'s connections. Streams,
uploads and ``https://`` go through httpx, whose async client runs over the same ``LeanTransport``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from rock.client import sync_transport
from rock.client.config import ClientConfig
from rock.client.transport import LeanTransport

def async_client(config: ClientConfig, prefix: str = "", transport: httpx.AsyncBaseTransport | None = None,
                 timeout: Any = None) -> httpx.AsyncClient:
    """An httpx async client for the admin ``config`` names, under ``prefix``, with its headers."""
    return httpx.AsyncClient(
        base_url=config.base_url + prefix, headers=config.all_headers(), transport=transport,
        timeout=timeout if timeout is not None else httpx.Timeout(
            connect=config.connect_timeout, read=config.read_timeout, write=300.0, pool=30.0))


def sync_client(config: ClientConfig, prefix: str = "", timeout: float | None = None,
                transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx blocking client for the admin ``config`` names, under ``prefix``, with its headers."""
    return httpx.Client(base_url=config.base_url + prefix, headers=config.all_headers(), transport=transport,
                        timeout=config.read_timeout if timeout is None else timeout)


class AsyncPool:
    """One pool of kept-alive connections to one admin's routes under ``prefix``, over one
    ``httpx.AsyncBaseTransport``: ``LeanTransport`` unless the caller hands in another
    (``httpx.MockTransport`` in a test), which then takes every call through the httpx client."""

    def __init__(self, config: ClientConfig, prefix: str = "", max_connections: int = 64,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.base = config.base_url + prefix
        self.lean: LeanTransport | None = None  # the byte-level path's pool, when the transport is ours
        if transport is None:
            self.lean = transport = LeanTransport(max_idle_per_host=max_connections)
        self.transport: httpx.AsyncBaseTransport = transport
        self._client: httpx.AsyncClient | None = None
        url = httpx.URL(self.base)
        self.fast = url.scheme == "http" and self.lean is not None
        self.addr = (url.host, url.port or 80)
        self.path = url.raw_path.rstrip(b"/")
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        fixed = {"host": host, "accept": "*/*", "content-type": "application/json", **config.all_headers()}
        self.head = b"".join(f"{k}: {v}\r\n".encode() for k, v in fixed.items())

    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client over the same pool (made on first use: most objects never need it)."""
        if self._client is None:
            self._client = async_client(self.config, self.base[len(self.config.base_url):], self.transport)
        return self._client

    async def send(self, path: str, data: bytes, timeout: Any = httpx.USE_CLIENT_DEFAULT) -> tuple[int, bytes]:
        """POST JSON ``data`` to ``path``: (status, body), error answers included."""
        if not self.fast:
            response = await self.client.post(path, content=data, timeout=timeout,
                                              headers={"content-type": "application/json"})
            return response.status_code, response.content
        read_timeout = self.config.read_timeout if timeout is httpx.USE_CLIENT_DEFAULT else timeout
        payload = b"POST %s%s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (
            self.path, path.encode(), self.head, len(data), data)
        assert self.lean is not None
        return await self.lean.request_bytes(self.addr[0], self.addr[1], payload, read_timeout,
                                                  self.config.connect_timeout)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()
        await self.transport.aclose()


class SyncPool:
    """Blocking kept-alive connections to one admin's routes under ``prefix``, over one
    ``httpx.BaseTransport``.

    By default that is ``sync_transport.SyncTransport``: ``shared``, one connection per thread and
    admin, shared by every pool of that thread (the env clients); else one connection of its own,
    one call at a time (a gym session's steps). Calls to a plain ``http://`` admin take its
    byte-level path; ``https://`` and any ``transport`` the caller hands in (``httpx.MockTransport``
    in a test, a transport with retries) go through an ``httpx.Client`` over it.
    """

    def __init__(self, config: ClientConfig, prefix: str = "", shared: bool = True,
                 transport: httpx.BaseTransport | None = None):
        self.config, self.shared = config, shared
        self.base = config.base_url + prefix
        url = urlsplit(config.base_url)
        self.https = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/") + prefix
        self.headers = {"Content-Type": "application/json", **config.all_headers()}
        self.custom = transport is not None
        if transport is None:
            transport = sync_transport.SyncTransport(config.read_timeout, shared)
        self.transport: httpx.BaseTransport = transport
        # the byte-level path, over our own transport to a plain http:// admin
        self.lean = transport if isinstance(transport, sync_transport.SyncTransport) and not self.https else None
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        """An httpx client for streams and other calls (made on first use): over the caller's
        transport when one was handed in, else httpx's own (which streams responses)."""
        if self._client is None:
            self._client = sync_client(self.config, self.base[len(self.config.base_url):],
                                       transport=self.transport if self.custom else None)
        return self._client

    def send(self, method: str, path: str, data: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        """``method`` ``data`` to ``prefix + path``: (status, body), error answers included; a
        connection the server dropped while idle is replaced once."""
        headers = self.headers if content_type == "application/json" else {**self.headers, "Content-Type": content_type}
        if self.lean is not None:
            reply = self.lean.request_bytes(self.host, self.port, method, self.prefix + path, data, headers)
            return reply.status, reply.body
        response = self.client.request(method, path, content=data, headers=headers)
        return response.status_code, response.content

    def close(self) -> None:
        """Close this pool's connection (this thread's, when shared) and its httpx client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.transport.close()
