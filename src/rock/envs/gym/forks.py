"""``fork(n)`` of a Gymnasium session: n new sessions that go on from where it is.

A session is an env of ``EnvService`` in a sandbox of its own (``sessions.py``), so the GEM
fork's replay inside its source's env host (``rock.envs.forking``: more envs in the same
sandbox) does not fit: a child must be a session like any other, with a sandbox of its own that
stops when it closes. Each child is opened as its source was (the same env image, constructor
arguments, vector layout, per-call timeout and lease) and the source's seeded reset and the
actions since are replayed into it; the child's observation must then equal the source's, bit
for bit as the env host encoded it (``gymwire.item``), or the fork is refused
(``EnvNotDeterministic``, 409) and no child is kept. A vector session forks whole: each child is
a vector session whose every lane is where the source's lane is.

``how="full"`` (gVisor): the GEM fork's memory fork instead (``rock.envs.forking``): each child
is a full fork of the source's sandbox, its env host going on as it stood, so any session forks,
seeded or not, deterministic or not, with no replay; at most 20 (a sandbox fork's limit).

Why a fresh sandbox of the session's image and not a filesystem fork of the source's: the env's
state is in its process's memory, which only the replay rebuilds, and a replay into a copy of
files the episode already wrote would write them twice. Why the admin keeps the trail (the
seed, options and action bodies since the last reset): every reset and step of a session
passes through here, as bodies the env host takes back unchanged, and a session's env host has
no record of its own (``agent/envhost/replay.py`` keeps one for GEM envs only). A vector session
autoresets and may never be reset again, so the trail is bounded (``MAX_TRAIL_BYTES`` of action
bodies a session): past it the actions are dropped and a replay fork says so until the next
seeded reset (a full fork on gVisor needs no trail).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rock.agent.envhost import gymwire
from rock.envs.errors import EnvError
from rock.envs.forking import check_count

MAX_TRAIL_BYTES = 16 << 20  # action bodies kept per session: a 1-byte-action episode of ~300k steps


@dataclass(eq=False)
class Trail:
    """How a session was opened, and what a replay needs to reach where it is now."""

    args: dict  # the env host's make arguments (rock.envs.gym.sessions.GymSessions.open)
    image: str
    reset: bool = False  # reset since it opened
    seed: int | list | None = None  # the last reset's
    options: dict | None = None
    actions: list[bytes] = field(default_factory=list)  # the step bodies since, in order
    last: bytes = b""  # what the last reset or step answered (its observation is item 0)
    broken: str | None = None  # a step failed in the env's code: its state is unknown until a reset
    size: int = 0  # bytes of ``actions``; -1: past MAX_TRAIL_BYTES, the actions dropped

    def after_reset(self, seed, options, body: bytes) -> None:
        """Record a reset: its seed, options and answer; the actions kept so far and a broken mark are dropped."""
        self.reset, self.seed, self.options, self.actions, self.last, self.broken = True, seed, options, [], body, None
        self.size = 0

    def after_step(self, action: bytes, body: bytes) -> None:
        """Record a step's action and answer; past MAX_TRAIL_BYTES of actions they are all dropped (``size`` -1)
        and the session can no longer be replayed."""
        self.last = body
        if self.size < 0:
            return
        self.actions.append(action)
        self.size += len(action)
        if self.size > MAX_TRAIL_BYTES:
            self.actions, self.size = [], -1

    def copy(self) -> "Trail":
        """An independent copy (its own action list), for a fork."""
        return Trail(self.args, self.image, self.reset, self.seed, self.options, list(self.actions), self.last,
                     self.broken, self.size)

    def refusal(self, session_id: str) -> EnvError | None:
        """Why a replay cannot reach this state, or None."""
        if not self.reset:
            return EnvError(f"gym session {session_id} has no episode to fork: reset it first", "BadRequest")
        if self.size < 0:
            return EnvError(f"gym session {session_id} has stepped past what a replay keeps ({MAX_TRAIL_BYTES >> 20} MiB "
                            "of actions since its seeded reset): reset it with a seed to fork it, or fork it with "
                            "how='full' on gVisor", "BadRequest")
        if self.broken:
            return EnvError(f"gym session {session_id}: a step failed in the env ({self.broken}), so where it stands "
                            "is unknown; reset it to fork it", "BadRequest")
        seeds = self.seed if isinstance(self.seed, list) else [self.seed]
        if any(s is None for s in seeds):
            return EnvError(f"gym session {session_id} was reset without a seed{' for every env' if len(seeds) > 1 else ''}"
                            ": a replay cannot reach the same state; reset it with a seed to fork it",
                            "EnvNotDeterministic")
        return None


async def fork(sessions, session_id: str, owner: str | None, n: int, how: str = "replay") -> tuple[list, int]:
    """``n`` sessions (``GymSessionInfo``) where ``session_id`` is now, and how many actions each
    replayed (0 for ``full``); all opened or none. ``sessions``: the admin's ``GymSessions``."""
    check_count(n, how)
    rec = sessions.get(session_id, owner)
    if how == "full":
        return await _fork_full(sessions, rec, owner, n), 0
    source = sessions.trails[session_id]
    if (refused := source.refusal(session_id)) is not None:
        raise refused
    trail = source.copy()  # the source may step on while its children replay
    lease = sessions.sessions[session_id].lease
    results = await asyncio.gather(*(_child(sessions, session_id, trail, lease, owner) for _ in range(n)),
                                   return_exceptions=True)
    children = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await asyncio.gather(*(sessions.close(c.session_id, owner) for c in children), return_exceptions=True)
        raise failed[0]
    return children, len(trail.actions)


async def _child(sessions, source_id: str, trail: Trail, lease: float, owner: str | None):
    info = await sessions.start(trail.args, trail.image, lease, owner)
    try:
        envs, cid = sessions.envs, info.session_id
        body = await envs.call(cid, "gym_reset", {"seed": trail.seed, "options": trail.options}, owner)
        for action in trail.actions:
            body = await envs.call(cid, "gym_step", {}, owner, action)
        if gymwire.item(body, 0) != gymwire.item(trail.last, 0):
            raise EnvError(f"gym session {source_id} ({info.contract.get('id')}) is not deterministic: replaying its "
                           f"seed {trail.seed!r} and {len(trail.actions)} actions gave another observation than it "
                           "holds, so no fork of it can start in its state", "EnvNotDeterministic")
    except BaseException:
        await sessions.close(info.session_id, owner)
        raise
    sessions.trails[info.session_id] = trail.copy()
    return info


async def _fork_full(sessions, rec, owner: str | None, n: int) -> list:
    """Memory forks of the session's sandbox (gVisor), recorded as sessions like the source."""
    source, trail = sessions.sessions[rec.handle], sessions.trails[rec.handle]
    envs = sessions.envs
    children = await envs.forks.full(rec, n, owner)
    out = []
    for child in children:
        info = source.model_copy(update={"session_id": child.handle, "sandbox_id": child.sandbox.sandbox_id})
        sessions.sessions[child.handle] = info
        sessions.trails[child.handle] = trail.copy()  # the same episode: a later replay fork of it holds
        out.append(info)
    envs.start_reaper(deadline_changed=True)
    return out
