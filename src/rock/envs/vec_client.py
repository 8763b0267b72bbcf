"""``rock.make_vec``: many envs of one id, stepped with one request per call.

    vec = rock.make_vec("game:Sokoban-v0-easy", num_envs=64)
    obs, infos = vec.reset(seed=0)                  # env i gets seed 0 + i
    obs, rewards, terminated, truncated, infos = vec.step(["\\\\boxed{up}"] * 64)
    vec.step({3: "\\\\boxed{left}", 7: "\\\\boxed{down}"})   # only envs 3 and 7 move
    vec.close()

Autoreset (``autoreset="same_step"`` by default, ``"next_step"`` or ``"off"``), seeds and subsets
are specified in ``rock.envs.vector``. Results are lists (no numpy needed), in the order the
actions were given, like gem's ``SyncVectorEnv``. If some envs fail, ``EnvError`` is raised with
``errors`` (index -> error) and ``results`` (what the others returned; they did move).
"""

from __future__ import annotations

import json
from typing import Any

from rock.envs.client import AsyncHttp, SyncHttp
from rock.envs.errors import EnvError


def _order(actions: dict | list) -> tuple[list[int], dict[int, Any]]:
    if isinstance(actions, dict):
        return list(actions), dict(actions)
    given = {i: a for i, a in enumerate(actions) if a is not None}
    return list(given), given


def _results(raw: bytes, order: list[int]) -> list[dict]:
    """The reply's results in the caller's order; raises if any env failed."""
    reply = json.loads(raw)
    by_index = dict(zip(reply["indices"], reply["results"]))
    results = [by_index[i] for i in order]
    errors = {i: r["error"] for i, r in zip(order, results) if "error" in r}
    if errors:
        first = next(iter(errors.values()))
        listed = "; ".join(f"env {i}: {e['type']}: {e['message']}" for i, e in list(errors.items())[:5])
        exc = EnvError(f"{len(errors)} of {len(order)} envs failed: {listed}", first["type"])
        exc.errors, exc.results = errors, {i: r for i, r in zip(order, results) if "error" not in r}
        raise exc
    return results


def _step_lists(results: list[dict]):
    return ([r["observation"] for r in results], [r["reward"] for r in results],
            [r["terminated"] for r in results], [r["truncated"] for r in results], [r["info"] for r in results])


def _make_body(env_id: str, num_envs: int, autoreset: str, vec_kwargs, timeout, kwargs) -> dict:
    body = {"env_id": env_id, "num_envs": num_envs, "kwargs": kwargs, "autoreset": autoreset}
    if vec_kwargs is not None:
        body["vec_kwargs"] = vec_kwargs
    if timeout is not None:
        body["timeout"] = timeout
    return body


class _Vec:
    def _init(self, reply: dict) -> None:
        self.vec_id: str | None = reply["vec_id"]
        self.env_id: str = reply["env_id"]
        self.num_envs: int = reply["num_envs"]
        self.handles: list[str] = reply["envs"]
        self.autoreset: str = reply["autoreset"]

    def _id(self) -> str:
        if self.vec_id is None:
            raise EnvError(f"vector env {self.env_id} is closed", "EnvNotFound")
        return self.vec_id

    @staticmethod
    def _reset_body(vec_id: str, seed, indices) -> dict:
        return {"vec_id": vec_id, "seed": seed, "indices": None if indices is None else list(indices)}


class VecEnv(_Vec):
    def __init__(self, http: SyncHttp, reply: dict):
        self._http = http
        self._init(reply)

    @classmethod
    def create(cls, env_id: str, num_envs: int, *, autoreset: str = "same_step", vec_kwargs: list[dict] | None = None,
               base_url: str | None = None, token: str | None = None, timeout: float | None = None,
               **kwargs: Any) -> "VecEnv":
        http = SyncHttp(base_url, token)
        raw = http.post("/vec/make", _make_body(env_id, num_envs, autoreset, vec_kwargs, timeout, kwargs))
        return cls(http, json.loads(raw))

    def reset(self, seed: int | list[int] | None = None, indices: list[int] | None = None) -> tuple[list, list]:
        order = list(range(self.num_envs)) if indices is None else list(indices)
        results = _results(self._http.post("/vec/reset", self._reset_body(self._id(), seed, indices)), order)
        return [r["observation"] for r in results], [r["info"] for r in results]

    def step(self, actions: dict[int, Any] | list[Any]):
        order, given = _order(actions)
        raw = self._http.post("/vec/step", {"vec_id": self._id(), "actions": {str(i): a for i, a in given.items()}})
        return _step_lists(_results(raw, order))

    def close(self) -> None:
        if self.vec_id is not None:
            vec_id, self.vec_id = self.vec_id, None
            self._http.post("/vec/close", {"vec_id": vec_id})

    def __enter__(self) -> "VecEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncVecEnv(_Vec):
    def __init__(self, http: AsyncHttp, reply: dict):
        self._http = http
        self._init(reply)

    @classmethod
    async def create(cls, env_id: str, num_envs: int, *, autoreset: str = "same_step",
                     vec_kwargs: list[dict] | None = None, base_url: str | None = None, token: str | None = None,
                     timeout: float | None = None, **kwargs: Any) -> "AsyncVecEnv":
        http = AsyncHttp(base_url, token)
        raw = await http.post("/vec/make", _make_body(env_id, num_envs, autoreset, vec_kwargs, timeout, kwargs))
        return cls(http, json.loads(raw))

    async def reset(self, seed: int | list[int] | None = None, indices: list[int] | None = None) -> tuple[list, list]:
        order = list(range(self.num_envs)) if indices is None else list(indices)
        results = _results(await self._http.post("/vec/reset", self._reset_body(self._id(), seed, indices)), order)
        return [r["observation"] for r in results], [r["info"] for r in results]

    async def step(self, actions: dict[int, Any] | list[Any]):
        order, given = _order(actions)
        raw = await self._http.post("/vec/step", {"vec_id": self._id(), "actions": {str(i): a for i, a in given.items()}})
        return _step_lists(_results(raw, order))

    async def close(self) -> None:
        if self.vec_id is not None:
            vec_id, self.vec_id = self.vec_id, None
            try:
                await self._http.post("/vec/close", {"vec_id": vec_id})
            finally:
                await self._http.aclose()

    async def __aenter__(self) -> "AsyncVecEnv":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
