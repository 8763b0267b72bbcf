"""``rock.make``: GEM envs hosted in sandboxes, with the GEM interface (sync and async).

    env = rock.make("game:Sokoban-v0-easy", max_turns=30)   # kwargs reach the env's constructor
    obs, info = env.reset(seed=42)
    obs, reward, terminated, truncated, info = env.step("\\\\boxed{up}")
    env.close()

The admin is found through ``ROCK_BASE_URL`` (default ``http://localhost:8080``) and
``ROCK_TOKEN``, as for sandboxes. ``AsyncEnv`` (``await make_async(...)``) is the twin for
trainers that drive many envs from one event loop. Vector envs: ``rock.envs.vec_client``.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

from rock.envs.errors import STATUS, EnvError
from rock.errors import RockError
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


def _step_tuple(raw: bytes) -> tuple[Any, float, bool, bool, dict]:
    r = loads(raw)
    return r["observation"], r["reward"], r["terminated"], r["truncated"], r["info"]


def _reset_tuple(raw: bytes) -> tuple[Any, dict]:
    r = loads(raw)
    return r["observation"], r["info"]


class Env:
    """A GEM env living in a sandbox. ``sandbox_id`` is its handle (GEM's wire name for it)."""

    def __init__(self, env_id: str, kwargs: dict | None = None, *, base_url: str | None = None,
                 token: str | None = None, timeout: float | None = None):
        self.env_id = env_id
        self._http = SyncHttp(base_url, token)
        body = {"env_id": env_id, "kwargs": kwargs or {}}
        if timeout is not None:
            body["timeout"] = timeout
        self.sandbox_id: str | None = json.loads(self._http.post("/make", body))["sandbox_id"]

    def reset(self, seed: int | None = None) -> tuple[Any, dict]:
        """Reset the env: ``(observation, info)``."""
        return _reset_tuple(self._http.post("/reset", {"sandbox_id": self._handle(), "seed": seed}))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """One step: ``(observation, reward, terminated, truncated, info)``."""
        return _step_tuple(self._http.post("/step", {"sandbox_id": self._handle(), "action": action}))

    def fork(self, n: int, how: str = "replay") -> list["Env"]:
        """``n`` new envs that go on from this one's current state: the same observation and
        episode step, then each steps on its own. ``how="replay"`` (1 to 64, every backend): the
        env host replays this env's seeded reset and actions since into each and checks the
        result; an env reset without a seed, or one that is not deterministic, is refused
        (``EnvError`` kind ``EnvNotDeterministic``), never forked into another state.
        ``how="full"`` (1 to 20, gVisor): a memory fork of the env's sandbox per child, any env
        (``rock.envs.forking``)."""
        forked = json.loads(self._http.post("/fork", {"sandbox_id": self._handle(), "n": n, "how": how}))
        return [self._child(handle) for handle in forked["envs"]]

    def _child(self, handle: str) -> "Env":
        child = object.__new__(type(self))  # a handle the admin made: no make of its own
        child.env_id, child._http, child.sandbox_id = self.env_id, self._http, handle
        return child

    def close(self) -> None:
        """Close the env (its sandbox is kept for other envs or reaped when idle)."""
        if self.sandbox_id is not None:
            handle, self.sandbox_id = self.sandbox_id, None
            self._http.post("/close", {"sandbox_id": handle})

    def _handle(self) -> str:
        if self.sandbox_id is None:
            raise EnvError(f"env {self.env_id} is closed", "EnvNotFound")
        return self.sandbox_id

    def __enter__(self) -> "Env":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<rock Env {self.env_id} {self.sandbox_id or 'closed'}>"


class AsyncEnv:
    """The async twin of ``Env``: ``env = await make_async(id)``, ``await env.step(a)``."""

    def __init__(self, env_id: str, http: AsyncHttp, handle: str):
        self.env_id, self._http, self.sandbox_id = env_id, http, handle

    @classmethod
    async def create(cls, env_id: str, kwargs: dict | None = None, *, base_url: str | None = None,
                     token: str | None = None, timeout: float | None = None, http: AsyncHttp | None = None) -> "AsyncEnv":
        """``http``: share one connection pool among many envs (one per env by default)."""
        http = http or AsyncHttp(base_url, token)
        body = {"env_id": env_id, "kwargs": kwargs or {}}
        if timeout is not None:
            body["timeout"] = timeout
        raw = await http.post("/make", body)
        return cls(env_id, http, json.loads(raw)["sandbox_id"])

    async def reset(self, seed: int | None = None) -> tuple[Any, dict]:
        """Reset the env: ``(observation, info)``."""
        return _reset_tuple(await self._http.post("/reset", {"sandbox_id": self._handle(), "seed": seed}))

    async def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """One step: ``(observation, reward, terminated, truncated, info)``."""
        return _step_tuple(await self._http.post("/step", {"sandbox_id": self._handle(), "action": action}))

    async def fork(self, n: int, how: str = "replay") -> list["AsyncEnv"]:
        """``Env.fork`` for asyncio: ``n`` envs that go on from this one's current state."""
        forked = json.loads(await self._http.post("/fork", {"sandbox_id": self._handle(), "n": n, "how": how}))
        return [type(self)(self.env_id, self._http, handle) for handle in forked["envs"]]

    async def close(self) -> None:
        """Close the env (its sandbox is kept for other envs or reaped when idle)."""
        if self.sandbox_id is not None:
            handle, self.sandbox_id = self.sandbox_id, None
            await self._http.post("/close", {"sandbox_id": handle})

    def _handle(self) -> str:
        if self.sandbox_id is None:
            raise EnvError(f"env {self.env_id} is closed", "EnvNotFound")
        return self.sandbox_id

    async def __aenter__(self) -> "AsyncEnv":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def make(env_id: str, **kwargs: Any) -> Env:
    """GEM's ``make``: an env hosted in a sandbox; keyword arguments go to its constructor.
    ``agentic:<suite>`` (task_id=, harness=): an agent harness's model calls as observations
    (``rock.agentic.tasks.env``)."""
    if env_id.startswith("agentic:"):
        from rock.agentic.tasks.env import AgenticEnv

        return AgenticEnv(env_id, **kwargs)
    return Env(env_id, kwargs)


async def make_async(env_id: str, **kwargs: Any) -> AsyncEnv:
    """``rock.make`` for asyncio: an ``AsyncEnv`` for ``env_id`` (kwargs reach the env's constructor)."""
    if env_id.startswith("agentic:"):
        from rock.agentic.tasks import env

        return await env.make_async(env_id, **kwargs)
    return await AsyncEnv.create(env_id, kwargs)


def make_vec(env_id: str, num_envs: int, **kwargs: Any):
    """Vector env (sync); see ``rock.envs.vec_client.VecEnv`` for seeds, subsets and autoreset."""
    from rock.envs.vec_client import VecEnv

    return VecEnv.create(env_id, num_envs, **kwargs)


async def make_vec_async(env_id: str, num_envs: int, **kwargs: Any):
    """``rock.make_vec`` for asyncio: an ``AsyncVecEnv`` of ``num_envs`` copies of ``env_id``."""
    from rock.envs.vec_client import AsyncVecEnv

    return await AsyncVecEnv.create(env_id, num_envs, **kwargs)


__all__ = ["Env", "AsyncEnv", "make", "make_async", "make_vec", "make_vec_async", "EnvError", "RockError"]
