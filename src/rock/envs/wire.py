"""The env clients' HTTP (``rock.make``, ``rock.make_vec``, the training client): one pooled
connection per client, sync over ``http.client`` and async over httpx, the admin's URL and token
from ``ROCK_BASE_URL`` and ``ROCK_TOKEN``, and error answers raised as ``EnvError``.

Below the clients that use it (``rock.envs.client``, ``rock.envs.vec_client``), so each imports
it and neither imports the other."""

from __future__ import annotations

import http.client
import json
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

from rock.envs.errors import STATUS, EnvError
from rock.sdk import sync_transport
from rock.sdk.sandbox.http import error_from
from rock.sdk.transport import LeanTransport

GEM = "/apis/v1/envs/gem"
TIMEOUT = 600.0  # the service bounds each call inside the env (EnvSettings.call_timeout)

try:  # optional: reads a 256-env vector reply ~2.5x faster than the stdlib
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None


def loads(raw: bytes) -> Any:
    """JSON from bytes: orjson where installed, else the standard library (NaN and big ints included)."""
    if _fast_loads is not None:
        try:
            return _fast_loads(raw)
        except ValueError:  # NaN/Infinity (json.dumps writes them for float rewards), huge ints
            pass
    return json.loads(raw)


def _headers(token: str | None) -> dict[str, str]:
    token = token or os.environ.get("ROCK_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _base(base_url: str | None) -> str:
    return (base_url or os.environ.get("ROCK_BASE_URL") or "http://localhost:8080").rstrip("/")


def raise_for(status: int, raw: bytes) -> None:
    """A failed reply as the error the service raised (``EnvError`` with its ``kind``)."""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    result = payload.get("result") if isinstance(payload, dict) and isinstance(payload.get("result"), dict) else {}
    kind = result.get("error_type")
    if kind in STATUS:
        exc = EnvError(payload.get("message") or kind, kind)
        exc.status_code = status
        raise exc
    raise error_from(status, payload, raw.decode(errors="replace"))


class SyncHttp:
    """Blocking keep-alive HTTP/1.1: one connection per thread and admin.

    Plain http:// goes through rock.sdk.sync_transport (lean, ~0.2 ms a call less than
    http.client); https:// through http.client.
    """

    _local = threading.local()

    def __init__(self, base_url: str | None = None, token: str | None = None, routes: str = GEM,
                 timeout: float = TIMEOUT):
        self.base, self.timeout = _base(base_url), timeout
        url = urlsplit(self.base)
        self.https = url.scheme == "https"
        self.host, self.port, self.prefix = url.hostname, url.port or (443 if self.https else 80), url.path + routes
        self.headers = {"Content-Type": "application/json", **_headers(token)}

    def _conn(self, fresh: bool = False):
        conns = self._local.__dict__.setdefault("conns", {})
        key = (self.https, self.host, self.port)
        conn = conns.get(key)
        if fresh or conn is None or (not self.https and not conn.open):
            if conn is not None:
                conn.close()
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
            else:
                conn = sync_transport.Connection(self.host, self.port, self.timeout)
            conns[key] = conn
        return conn

    def _exchange(self, conn, path: str, data: bytes) -> tuple[int, bytes]:
        if self.https:
            conn.request("POST", path, data, self.headers)
            response = conn.getresponse()
            return response.status, response.read()
        response = conn.request("POST", path, data, self.headers)
        return response.status, response.body

    def post(self, path: str, body: dict) -> bytes:
        """POST ``body`` as JSON to the env route ``path``; the raw answer, or the error it maps to raised."""
        status, raw = self.exchange(path, body)
        if status >= 400:
            raise_for(status, raw)
        return raw

    def exchange(self, path: str, body: dict) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``routes + path``: (status, body), errors included."""
        data = json.dumps(body, separators=(",", ":")).encode()
        for attempt in (0, 1):
            try:
                return self._exchange(self._conn(fresh=attempt == 1), self.prefix + path, data)
            except (sync_transport.ConnectionDropped, http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError):
                # The server closed a kept-alive idle connection before reading the request:
                # nothing ran, so sending again on a new connection is safe.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this thread's connection to the admin."""
        conn = self._local.__dict__.get("conns", {}).pop((self.https, self.host, self.port), None)
        if conn is not None:
            conn.close()


class AsyncHttp:
    """Async keep-alive HTTP over the SDK's lean transport (one pool per client object)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, routes: str = GEM,
                 max_connections: int = 64):
        self.base, self.token = _base(base_url), token
        self.routes = routes
        url = httpx.URL(self.base + routes)
        self.addr = (url.host, url.port or (443 if url.scheme == "https" else 80))
        self.path = url.raw_path.rstrip(b"/")
        self.fast = url.scheme == "http"
        self.headers = {"content-type": "application/json", **_headers(token)}
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        self.head = b"".join(f"{k}: {v}\r\n".encode() for k, v in {"host": host, **self.headers}.items())
        self.transport = LeanTransport(max_idle_per_host=max_connections)
        self.client: httpx.AsyncClient | None = None

    def twin(self) -> "AsyncHttp":
        """A pool of its own to the same admin with the same token (for an object that closes its
        pool, such as a forked vector env)."""
        return AsyncHttp(self.base, self.token, self.routes)

    async def post(self, path: str, body: dict) -> bytes:
        """POST ``body`` as JSON to the env route ``path``; the raw answer, or the error it maps to raised."""
        status, raw = await self.exchange(path, body)
        if status >= 400:
            raise_for(status, raw)
        return raw

    async def exchange(self, path: str, body: dict, timeout: float | None = TIMEOUT) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``routes + path``: (status, body), errors included."""
        data = json.dumps(body, separators=(",", ":")).encode()
        if self.fast:
            payload = b"POST %s%s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (
                self.path, path.encode(), self.head, len(data), data)
            return await self.transport.request_bytes(self.addr[0], self.addr[1], payload, timeout)
        if self.client is None:
            self.client = httpx.AsyncClient(headers=self.headers, timeout=timeout)
        response = await self.client.post(self.base + self.routes + path, content=data)
        return response.status_code, response.content

    async def aclose(self) -> None:
        """Close the pooled connection."""
        if self.client is not None:
            await self.client.aclose()
        await self.transport.aclose()
