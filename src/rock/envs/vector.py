"""Vector envs: ``num_envs`` envs of one id, stepped together with one request per env sandbox.

Semantics (the SDK's ``make_vec`` and the ``/vec/*`` routes):

- **Seeds**: ``reset(seed=s)`` resets env ``i`` with seed ``s + i``; ``reset(seed=[s0, s1, ...])``
  gives each env its own; ``reset()`` leaves them unseeded. ``reset(indices=[...])`` resets a subset.
- **Subsets**: ``step({i: action, ...})`` (or a list with ``None`` for envs to leave alone) moves
  only the named envs; results come back for those envs, in the order the actions were given.
- **Fork** (``fork(n)``): ``n`` vector envs where this one is, lane by lane: each lane is replayed
  (its seeded reset, its actions and its autoresets since) into ``n`` new envs beside it in its
  sandbox's env host (``rock.envs.forking``), and child ``k`` takes the ``k``-th of every lane,
  so lane ``i`` of every child sits in the sandbox of lane ``i``. A lane reset without a seed,
  or one that is not deterministic, refuses the whole fork (409) and no child is kept.
- **Autoreset** (``autoreset=``), as gem's vector envs define it:
  - ``"same_step"`` (default): when an env's episode ends (terminated or truncated) in a step,
    it is reset within that same request. Its result carries the ending step's reward,
    terminated and truncated, the *new* episode's observation and info, and the ending step's
    observation and info as ``info["final_observation"]`` and ``info["final_info"]``.
  - ``"next_step"``: the ending step is returned as is; the env's next step ignores its action,
    resets it and returns the new episode's first observation with reward 0.0 and
    terminated = truncated = False.
  - ``"off"``: nothing is reset for you; call ``reset(indices=[...])``.
  Autoresets pass no seed (the env's own random stream continues), so a run is reproducible
  from the seeds of the first reset. Every env has its own global RNG state in its host
  (see ``agent/envhost/host.py``), so results do not depend on how envs share sandboxes.

Wire format: envs of one vector fill sandboxes in contiguous index ranges (``blocks``), and each
sandbox's env host answers its share column by column (``agent/envhost/host.py``, ``Host.op_batch``).
The admin never decodes those replies: ``/vec/step`` and ``/vec/reset`` answer
``{"indices": [...] | null, "parts": [<host reply>, ...]}``, the parts in index order and
``indices`` the env indices they cover (null: every env, in order); the client joins the columns.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rock.envs.errors import EnvError
from rock.envs.forking import MAX_FORK, replay_children
from rock.envs.service import EnvService, split_handle

AUTORESET = ("same_step", "next_step", "off")


@dataclass(eq=False)
class VecRecord:
    """A vector env: its id, env id and owner, the handles of its envs in index order, its autoreset mode, and
    which sandbox holds which index range."""

    vec_id: str
    env_id: str
    owner: str | None
    handles: list[str]
    autoreset: str
    blocks: list[tuple[str, int, int]]  # (sandbox_id, first index, end index)
    last_used: float = field(default_factory=time.time)
    names: list[str] = field(default_factory=list)  # each env's name inside its sandbox

    def __post_init__(self) -> None:
        self.names = [split_handle(h)[1] for h in self.handles]


async def make_vec(svc: EnvService, env_id: str, num_envs: int, owner: str | None, kwargs: dict | None = None,
                   vec_kwargs: list[dict] | None = None, autoreset: str = "same_step",
                   timeout: float | None = None) -> VecRecord:
    """Make ``num_envs`` envs of ``env_id`` as one vector env, all at once, filling the owner's env sandboxes
    (up to envs_per_sandbox each) before starting new ones; ``vec_kwargs`` (one dict per env) adds to
    ``kwargs``. If any fails, those made are closed and its error is raised. Raises EnvError (BadRequest)
    for a bad autoreset, count or vec_kwargs."""
    if autoreset not in AUTORESET:
        raise EnvError(f"autoreset must be one of {', '.join(AUTORESET)}, not {autoreset!r}", "BadRequest")
    if num_envs < 1:
        raise EnvError("num_envs must be at least 1", "BadRequest")
    if vec_kwargs is not None and len(vec_kwargs) != num_envs:
        raise EnvError(f"vec_kwargs has {len(vec_kwargs)} entries for {num_envs} envs", "BadRequest")
    base, place = await svc.make_args(env_id, dict(kwargs or {}), timeout)
    if (refused := svc.catalog.unavailable(env_id)) is not None:
        raise refused
    vec_id = f"vec-{uuid.uuid4().hex[:12]}"
    plan = svc.reserve(owner, place["image"], num_envs, place["network"])
    jobs, blocks, index = [], [], 0
    for sb, take in plan:
        blocks.append((sb.sandbox_id, index, index + take))
        for i in range(index, index + take):
            args = dict(base, kwargs={**base["kwargs"], **(vec_kwargs[i] if vec_kwargs else {})})
            jobs.append(svc.make_in(sb, args, owner, vec=vec_id))
        index += take
    results = [r if isinstance(r, BaseException) else r[0] for r in await asyncio.gather(*jobs, return_exceptions=True)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        made = [r.handle for r in results if not isinstance(r, BaseException)]
        await asyncio.gather(*(svc.close(h, owner) for h in made), return_exceptions=True)
        raise failed[0]
    vec = VecRecord(vec_id=vec_id, env_id=env_id, owner=owner, handles=[r.handle for r in results],
                    autoreset=autoreset, blocks=blocks)
    svc.vecs[vec_id] = vec
    return vec


def get_vec(svc: EnvService, vec_id: str, owner: str | None) -> VecRecord:
    """The caller's vector env ``vec_id``, marked used now; EnvError (EnvNotFound) for one that is gone or is
    another owner's."""
    vec = svc.vecs.get(vec_id)
    if vec is None or vec.owner != owner:
        raise EnvError(f"no vector env {vec_id!r} (closed, reclaimed, or never made)", "EnvNotFound")
    vec.last_used = time.time()
    return vec


async def _batch(svc: EnvService, vec: VecRecord, op: str, values: list | dict[int, Any]) -> bytes:
    """``op`` on the envs named by ``values`` (one value per env, None: skip it; or index -> value),
    one request per sandbox, all at once; the hosts' replies are passed on undecoded."""
    n = len(vec.handles)
    if isinstance(values, list) and len(values) != n:
        values = {i: v for i, v in enumerate(values) if v is not None}
    if isinstance(values, dict):
        chosen = sorted(_index(vec, i) for i in values)
        if len(chosen) == n:
            values = [values[i] for i in chosen]
    else:
        chosen = [i for i, v in enumerate(values) if v is not None]
    extra = {"call": op, "autoreset": vec.autoreset}
    jobs = []
    for sandbox_id, start, end in vec.blocks:
        if len(chosen) == n:  # every env: slices, no per-env work here
            args = dict(extra, envs=vec.names[start:end], values=values[start:end])
        else:
            part = [i for i in chosen if start <= i < end]
            if not part:
                continue
            args = dict(extra, envs=[vec.names[i] for i in part], values=[values[i] for i in part])
        jobs.append(svc.env_call(sandbox_id, vec.owner, "batch", args))
    bodies = await asyncio.gather(*jobs)
    indices = b"null" if len(chosen) == n else str(chosen).replace(" ", "").encode()
    return b'{"indices":%s,"parts":[%s]}' % (indices, b",".join(bodies))


def _index(vec: VecRecord, i: Any) -> int:
    if not isinstance(i, int) or not 0 <= i < len(vec.handles):
        raise EnvError(f"env index {i!r} is out of range for {len(vec.handles)} envs", "BadRequest")
    return i


async def vec_step(svc: EnvService, vec: VecRecord, actions: list | dict[int, Any]) -> bytes:
    """``actions``: one per env (None: leave that env alone) or {index: action}."""
    return await _batch(svc, vec, "vstep", actions)


async def vec_reset(svc: EnvService, vec: VecRecord, seed: int | list | None, indices: list[int] | None) -> bytes:
    """Reset the envs at ``indices`` (None: all). ``seed``: a list (one per env), an int (env i gets
    ``seed + i``), or None. Returns the hosts' replies, undecoded."""
    n = len(vec.handles)
    if isinstance(seed, list) and len(seed) != n:
        raise EnvError(f"seed list has {len(seed)} entries for {n} envs", "BadRequest")
    seeds = {}
    for i in (range(n) if indices is None else indices):
        i = _index(vec, i)
        seeds[i] = seed[i] if isinstance(seed, list) else (None if seed is None else seed + i)
    return await _batch(svc, vec, "reset", seeds)


async def vec_close(svc: EnvService, vec: VecRecord) -> int:
    """Close every env of the vector env and forget it; returns how many were closed."""
    svc.vecs.pop(vec.vec_id, None)
    results = await asyncio.gather(*(svc.close(h, vec.owner) for h in vec.handles), return_exceptions=True)
    return sum(1 for r in results if r is True)


async def vec_fork(svc: EnvService, vec: VecRecord, n: int) -> tuple[list[VecRecord], int]:
    """``n`` vector envs where ``vec`` is now (see the module's Fork), and the most calls a lane
    replayed; all made or none."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_FORK:
        raise EnvError(f"fork count must be 1 to {MAX_FORK}, not {n!r}", "BadRequest")
    lanes = []
    for i, handle in enumerate(vec.handles):
        if (rec := svc.envs.get(handle)) is None:
            raise EnvError(f"lane {i} of vector env {vec.vec_id} is gone (closed or reclaimed)", "EnvNotFound")
        lanes.append(rec)
    ids = [f"vec-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    results = await asyncio.gather(*(replay_children(svc, rec, n, vec.owner) for rec in lanes), return_exceptions=True)
    made = [h.handle for r in results if not isinstance(r, BaseException) for h in r[0]]
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            await asyncio.gather(*(svc.close(h, vec.owner) for h in made), return_exceptions=True)
            if isinstance(r, EnvError):
                raise EnvError(f"lane {i} of vector env {vec.vec_id}: {r.message}", r.kind) from None
            raise r
    children = []
    for k, vec_id in enumerate(ids):
        handles = [lane[0][k].handle for lane in results]
        for lane in results:
            lane[0][k].vec = vec_id
        child = VecRecord(vec_id=vec_id, env_id=vec.env_id, owner=vec.owner, handles=handles,
                          autoreset=vec.autoreset, blocks=list(vec.blocks))
        svc.vecs[vec_id] = child
        children.append(child)
    return children, max(r[1] for r in results)
