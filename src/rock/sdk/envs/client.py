"""``rock.make``: GEM envs hosted in sandboxes, with the GEM interface (sync and async).

    env = rock.make("game:Sokoban-v0-easy", max_turns=30)   # kwargs reach the env's constructor
    obs, info = env.reset(seed=42)
    obs, reward, terminated, truncated, info = env.step("\\\\boxed{up}")
    env.close()

The admin is found through ``ROCK_BASE_URL`` (default ``http://localhost:8080``) and
``ROCK_TOKEN``, as for sandboxes. ``AsyncEnv`` (``await make_async(...)``) is the twin for
trainers that drive many envs from one event loop. Vector envs: ``rock.sdk.envs.vec_client``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rock.errors import EnvError
from rock.sdk.envs.vec_client import AsyncVecEnv, VecEnv
from rock.client.config import TIMEOUT  # noqa: F401 - importers' names
from rock.client.envelope import loads, raise_for  # noqa: F401 - importers' names
from rock.client.http import GEM, AsyncHttp, SyncHttp  # noqa: F401 - importers' names
from rock.errors import RockError


if TYPE_CHECKING:
    from rock.agentic.tasks.env import AgenticEnv, AsyncAgenticEnv


def _step_tuple(raw: bytes) -> tuple[Any, float, bool, bool, dict[str, Any]]:
    r = loads(raw)
    return r["observation"], r["reward"], r["terminated"], r["truncated"], r["info"]


def _reset_tuple(raw: bytes) -> tuple[Any, dict[str, Any]]:
    r = loads(raw)
    return r["observation"], r["info"]


class Env:
    """A GEM env living in a sandbox. ``sandbox_id`` is its handle (GEM's wire name for it)."""

    def __init__(self, env_id: str, kwargs: dict[str, Any] | None = None, *, base_url: str | None = None,
                 token: str | None = None, timeout: float | None = None):
        self.env_id = env_id
        self._http = SyncHttp(base_url, token)
        body: dict[str, Any] = {"env_id": env_id, "kwargs": kwargs or {}}
        if timeout is not None:
            body["timeout"] = timeout
        self.sandbox_id: str | None = json.loads(self._http.post("/make", body))["sandbox_id"]

    def reset(self, seed: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env: ``(observation, info)``."""
        return _reset_tuple(self._http.post("/reset", {"sandbox_id": self._handle(), "seed": seed}))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
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

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<rock Env {self.env_id} {self.sandbox_id or 'closed'}>"


class AsyncEnv:
    """The async twin of ``Env``: ``env = await make_async(id)``, ``await env.step(a)``."""

    def __init__(self, env_id: str, http: AsyncHttp, handle: str):
        self.env_id, self._http = env_id, http
        self.sandbox_id: str | None = handle

    @classmethod
    async def create(cls, env_id: str, kwargs: dict[str, Any] | None = None, *, base_url: str | None = None,
                     token: str | None = None, timeout: float | None = None, http: AsyncHttp | None = None) -> "AsyncEnv":
        """``http``: share one connection pool among many envs (one per env by default)."""
        http = http or AsyncHttp(base_url, token)
        body: dict[str, Any] = {"env_id": env_id, "kwargs": kwargs or {}}
        if timeout is not None:
            body["timeout"] = timeout
        raw = await http.post("/make", body)
        return cls(env_id, http, json.loads(raw)["sandbox_id"])

    async def reset(self, seed: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env: ``(observation, info)``."""
        return _reset_tuple(await self._http.post("/reset", {"sandbox_id": self._handle(), "seed": seed}))

    async def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
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

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def make(env_id: str, **kwargs: Any) -> "Env | AgenticEnv":
    """GEM's ``make``: an env hosted in a sandbox; keyword arguments go to its constructor.
    ``agentic:<suite>`` (task_id=, harness=): an agent harness's model calls as observations
    (``rock.agentic.tasks.env``)."""
    if env_id.startswith("agentic:"):
        from rock.agentic.tasks.env import AgenticEnv

        return AgenticEnv(env_id, **kwargs)
    return Env(env_id, kwargs)


async def make_async(env_id: str, **kwargs: Any) -> "AsyncEnv | AsyncAgenticEnv":
    """``rock.make`` for asyncio: an ``AsyncEnv`` for ``env_id`` (kwargs reach the env's constructor)."""
    if env_id.startswith("agentic:"):
        from rock.agentic.tasks import env

        return await env.make_async(env_id, **kwargs)
    return await AsyncEnv.create(env_id, kwargs)


def make_vec(env_id: str, num_envs: int, **kwargs: Any) -> VecEnv:
    """Vector env (sync); see ``rock.sdk.envs.vec_client.VecEnv`` for seeds, subsets and autoreset."""
    return VecEnv.create(env_id, num_envs, **kwargs)


async def make_vec_async(env_id: str, num_envs: int, **kwargs: Any) -> AsyncVecEnv:
    """``rock.make_vec`` for asyncio: an ``AsyncVecEnv`` of ``num_envs`` copies of ``env_id``."""
    return await AsyncVecEnv.create(env_id, num_envs, **kwargs)


__all__ = ["Env", "AsyncEnv", "make", "make_async", "make_vec", "make_vec_async", "EnvError", "RockError"]
