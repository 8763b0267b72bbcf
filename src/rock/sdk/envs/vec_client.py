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

from rock.agent.protocol import RESET_FIELDS, STEP_FIELDS
from rock.client.envelope import loads
from rock.client.http import AsyncHttp, SyncHttp
from rock.errors import EnvError


def _order(actions: dict[int, Any] | list[Any]) -> tuple[list[int], dict[str, Any] | list[Any]]:
    """The env indices in the caller's order, and the actions as sent (a list keeps its Nones)."""
    if isinstance(actions, dict):
        return list(actions), {str(i): a for i, a in actions.items()}
    actions = list(actions)
    return [i for i, a in enumerate(actions) if a is not None], actions


def _columns(raw: bytes, order: list[int], fields: tuple[str, ...]) -> list[list[Any]]:
    """One list per field, in the caller's order, from the hosts' column parts (see
    rock.envs.vector); raises if any env failed."""
    reply = loads(raw)
    cols: list[list[Any]] = [[] for _ in fields]
    errors: dict[int, dict[str, Any]] = {}
    for part in reply["parts"]:
        base = len(cols[0])
        for pos, err in (part.get("errors") or {}).items():
            errors[base + int(pos)] = err
        for col, field in zip(cols, fields):
            col.extend(part[field])
    indices = reply["indices"]
    if indices is None:
        indices = list(range(len(cols[0])))
    if indices != order:
        where = {i: pos for pos, i in enumerate(indices)}
        perm = [where[i] for i in order]
        cols = [[col[p] for p in perm] for col in cols]
        errors = {order.index(indices[pos]): err for pos, err in errors.items()}
    if errors:
        failed = {order[k]: err for k, err in sorted(errors.items())}
        first = next(iter(failed.values()))
        listed = "; ".join(f"env {i}: {e['type']}: {e['message']}" for i, e in list(failed.items())[:5])
        exc = EnvError(f"{len(failed)} of {len(order)} envs failed: {listed}", first["type"])
        exc.errors = failed
        exc.results = {i: dict(zip(fields, row)) for k, (i, *row) in enumerate(zip(order, *cols)) if k not in errors}
        raise exc
    return cols


def _make_body(env_id: str, num_envs: int, autoreset: str, vec_kwargs: list[dict[str, Any]] | None,
               timeout: float | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    body = {"env_id": env_id, "num_envs": num_envs, "kwargs": kwargs, "autoreset": autoreset}
    if vec_kwargs is not None:
        body["vec_kwargs"] = vec_kwargs
    if timeout is not None:
        body["timeout"] = timeout
    return body


class _Vec:
    def _init(self, reply: dict[str, Any]) -> None:
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
    def _reset_body(vec_id: str, seed: int | list[int] | None, indices: list[int] | None) -> dict[str, Any]:
        return {"vec_id": vec_id, "seed": seed, "indices": None if indices is None else list(indices)}


class VecEnv(_Vec):
    """``num_envs`` envs stepped together in one request per step (``rock.make_vec``)."""

    def __init__(self, http: SyncHttp, reply: dict[str, Any]):
        self._http = http
        self._init(reply)

    @classmethod
    def create(cls, env_id: str, num_envs: int, *, autoreset: str = "same_step", vec_kwargs: list[dict[str, Any]] | None = None,
               base_url: str | None = None, token: str | None = None, timeout: float | None = None,
               **kwargs: Any) -> "VecEnv":
        """Make the vector env on the admin (``autoreset``: ``same_step``, ``next_step`` or ``off``)."""
        http = SyncHttp(base_url, token)
        raw = http.post("/vec/make", _make_body(env_id, num_envs, autoreset, vec_kwargs, timeout, kwargs))
        return cls(http, json.loads(raw))

    def reset(self, seed: int | list[int] | None = None, indices: list[int] | None = None) -> tuple[list[Any], list[Any]]:
        """Reset all envs, or those at ``indices``: (observations, infos)."""
        order = list(range(self.num_envs)) if indices is None else list(indices)
        raw = self._http.post("/vec/reset", self._reset_body(self._id(), seed, indices))
        obs, infos = _columns(raw, order, RESET_FIELDS)
        return obs, infos

    def step(self, actions: dict[int, Any] | list[Any]) -> tuple[list[Any], ...]:
        """Step every env (a list, None leaves one alone) or some (``{index: action}``): (observations, rewards,
        terminated, truncated, infos)."""
        order, sent = _order(actions)
        raw = self._http.post("/vec/step", {"vec_id": self._id(), "actions": sent})
        return tuple(_columns(raw, order, STEP_FIELDS))

    def fork(self, n: int) -> list["VecEnv"]:
        """``n`` vector envs (1 to 64) that go on from this one's current state, lane by lane:
        lane ``i`` of each gives the same result as this one's lane ``i`` for the same action, then
        each steps on its own. The admin replays each lane's seeded reset, its actions and its
        autoresets since into new envs beside it and checks the observation they reach; a lane
        reset without a seed, or an env that is not deterministic, refuses the whole fork
        (``EnvError`` kind ``EnvNotDeterministic``) and no child is kept. Close each child as any
        vector env (``rock.envs.vector``)."""
        forked = json.loads(self._http.post("/vec/fork", {"vec_id": self._id(), "n": n}))
        return [type(self)(self._http, reply) for reply in forked["vecs"]]

    def close(self) -> None:
        """Close every env of the vector."""
        if self.vec_id is not None:
            vec_id, self.vec_id = self.vec_id, None
            self._http.post("/vec/close", {"vec_id": vec_id})

    def __enter__(self) -> "VecEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncVecEnv(_Vec):
    """``VecEnv`` for asyncio."""

    def __init__(self, http: AsyncHttp, reply: dict[str, Any]):
        self._http = http
        self._init(reply)

    @classmethod
    async def create(cls, env_id: str, num_envs: int, *, autoreset: str = "same_step",
                     vec_kwargs: list[dict[str, Any]] | None = None, base_url: str | None = None, token: str | None = None,
                     timeout: float | None = None, **kwargs: Any) -> "AsyncVecEnv":
        """Make the vector env on the admin (``autoreset``: ``same_step``, ``next_step`` or ``off``)."""
        http = AsyncHttp(base_url, token)
        raw = await http.post("/vec/make", _make_body(env_id, num_envs, autoreset, vec_kwargs, timeout, kwargs))
        return cls(http, json.loads(raw))

    async def reset(self, seed: int | list[int] | None = None, indices: list[int] | None = None) -> tuple[list[Any], list[Any]]:
        """Reset all envs, or those at ``indices``: (observations, infos)."""
        order = list(range(self.num_envs)) if indices is None else list(indices)
        raw = await self._http.post("/vec/reset", self._reset_body(self._id(), seed, indices))
        obs, infos = _columns(raw, order, RESET_FIELDS)
        return obs, infos

    async def step(self, actions: dict[int, Any] | list[Any]) -> tuple[list[Any], ...]:
        """Step every env (a list, None leaves one alone) or some (``{index: action}``): (observations, rewards,
        terminated, truncated, infos)."""
        order, sent = _order(actions)
        raw = await self._http.post("/vec/step", {"vec_id": self._id(), "actions": sent})
        return tuple(_columns(raw, order, STEP_FIELDS))

    async def fork(self, n: int) -> list["AsyncVecEnv"]:
        """``VecEnv.fork`` for asyncio: ``n`` vector envs that go on from this one's current state,
        each with a connection pool of its own (closed with it)."""
        forked = json.loads(await self._http.post("/vec/fork", {"vec_id": self._id(), "n": n}))
        return [type(self)(self._http.twin(), reply) for reply in forked["vecs"]]

    async def close(self) -> None:
        """Close every env of the vector."""
        if self.vec_id is not None:
            vec_id, self.vec_id = self.vec_id, None
            try:
                await self._http.post("/vec/close", {"vec_id": vec_id})
            finally:
                await self._http.aclose()

    async def __aenter__(self) -> "AsyncVecEnv":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
