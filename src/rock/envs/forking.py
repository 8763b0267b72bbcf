"""``fork(n)`` of a GEM/gym env by its handle: n envs that go on from where it is. Two ways:

``replay`` (the default), on every backend: the env host makes the env again ``n`` times in the same sandbox and
replays the seed of its last reset and the actions since, then checks each replayed observation
against the source's; a non-deterministic env is refused (``EnvNotDeterministic``, 409), never
forked into another state (``rock/agent/envhost/replay.py``). Why not the sandbox's fork: env
sandboxes are shared by many envs of one owner, and a full fork (gVisor) would copy all of them
and need the env host's sockets quiesced; a replay costs the episode so far and works on docker,
bwrap, gVisor and local alike. Its limit: an env whose state lives outside its process (files
it wrote) is forked only as far as the replay rebuilds it, and the check sees the observation.

The children are envs of the same owner and sandbox as the source, each closed on its own; they
count in the sandbox's envs (they may take it past ``envs_per_sandbox``: a group is sampled
from one state in one place).

``full``, on gVisor only: a full (memory) fork of the env's sandbox (rock.admin.sandboxes.snapshots
``Sandboxes.fork``): each child sandbox goes on with the env host's process as it stood, so
any env forks, deterministic or not, seeded or not, with no replay. The agent has the env host
close its own host socket for the checkpoint and bind it again after (rock_agent.checkpoint).
Each child sandbox is the child env's own (stopped when it closes); it also holds copies of the
other envs the source's sandbox hosted (the same owner's), which nobody is handed. At most 20
(the sandbox fork's limit); a backend that cannot is told so (400).
"""

from __future__ import annotations

import asyncio

from rock.actions.snapshots import MAX_FORK as MAX_FULL_FORK  # a full fork is a sandbox fork: its limit
from rock.envs.errors import EnvError, from_agent
from rock.envs.records import EnvRecord, EnvSandbox
from rock.errors import AgentError, AgentGone, SandboxNotFound, SandboxNotRunning

MAX_FORK = 64  # children per call: a GRPO group is 8-64; more is a mistake or a flood


def check_count(n, how: str) -> None:
    """A fork's ``how`` and count, as every env fork (GEM's, a gym session's) takes them."""
    if how not in ("replay", "full"):
        raise EnvError(f"fork how={how!r}: choose replay (every backend) or full (gvisor)", "BadRequest")
    most = MAX_FORK if how == "replay" else MAX_FULL_FORK
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= most:
        raise EnvError(f"fork count must be 1 to {most} (how={how}), not {n!r}", "BadRequest")


class EnvForks:
    """The forks of the env service's envs (see the module). The service holds one as ``forks``
    and its ``fork`` delegates here; this acts through the service's public records and methods
    (``envs``, ``by_id``, ``owned``, ``add_env``, ``sandboxes``, ``links``,
    ``start_reaper``), as e2b's SDK composes ``files`` and ``commands``."""

    def __init__(self, svc):
        self.svc = svc  # rock.envs.service.EnvService

    async def fork(self, handle: str, n: int, owner: str | None, how: str = "replay") -> tuple[list[EnvRecord], int]:
        """The children's records, and how many actions each replayed (0 for ``full``)."""
        check_count(n, how)
        svc = self.svc
        sandbox_id, local = svc.owned(handle, owner)
        rec = svc.envs.get(handle)
        if rec is None:  # closed, never made, or made before an admin restart: told as owned() tells
            raise EnvError(f"env {handle} is gone: sandbox {sandbox_id} not found", "EnvNotFound")
        if rec.vec is not None:
            raise EnvError(f"env {handle} is one of a vector env: fork single envs", "BadRequest")
        if rec.sandbox.dedicated:
            raise EnvError(f"env {handle} has a sandbox of its own, stopped when it closes: it cannot be forked",
                           "BadRequest")
        if how == "full":
            return await self._fork_full(rec, sandbox_id, local, n, owner), 0
        return await replay_children(svc, rec, n, owner)

    async def full(self, rec: EnvRecord, n: int, owner: str | None) -> list[EnvRecord]:
        """``n`` memory forks of ``rec``'s sandbox, each child's own, with none of ``fork``'s refusals
        of a sandbox of its own: a gym session's full fork (``rock.envs.gym.forks``), whose
        sandbox is its own and whose children are sessions like it."""
        sandbox_id, local = rec.handle.rsplit(":", 1)
        return await self._fork_full(rec, sandbox_id, local, n, owner)

    async def _fork_full(self, rec: EnvRecord, sandbox_id: str, local: str, n: int,
                         owner: str | None) -> list[EnvRecord]:
        svc = self.svc
        svc.sandboxes.check_mode("full")  # 400 where the backend cannot keep memory
        try:
            records, _ = await svc.sandboxes.fork(sandbox_id, owner, n, mode="full")
        except (SandboxNotFound, SandboxNotRunning) as exc:
            raise EnvError(f"env {rec.handle} is gone: {exc.message}", "EnvNotFound") from None
        # The source's direct link to its env host was closed for the checkpoint: a new one.
        svc.links.drop(sandbox_id)
        socket = rec.made.get("socket")
        if socket:
            await svc.links.connect(sandbox_id, socket)
        up = [r for r in records if r.state == "running"]
        for failed in (r for r in records if r.state != "running"):
            await svc.sandboxes.delete(failed.sandbox_id, owner)
        if not up:
            raise EnvError(f"no child of env {rec.handle} started: {records[0].failure_reason if records else ''}", "EnvError")
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        children = []
        for child in up:
            sb = EnvSandbox(sandbox_id=child.sandbox_id, owner=owner, key=(owner, rec.sandbox.key[1], False, "dedicated"),
                            dedicated=True, ready=done)
            svc.by_id[sb.sandbox_id] = sb
            env = EnvRecord(handle=f"{child.sandbox_id}:{local}", env_id=rec.env_id, owner=owner, sandbox=sb,
                            ttl=rec.ttl, made=rec.made)
            svc.add_env(env)
            if socket:
                await svc.links.connect(child.sandbox_id, socket)
            children.append(env)
        svc.start_reaper()
        return children


async def replay_children(svc, rec: EnvRecord, n: int, owner: str | None,
                          vec: str | None = None) -> tuple[list[EnvRecord], int]:
    """``n`` envs beside ``rec`` in its sandbox's env host, each replayed to where it is
    (``agent/envhost/replay.py``), recorded in ``svc`` (the ``EnvService``) as envs of the vector
    env ``vec`` or single; and how many calls each replayed. A vector env forks lane by lane
    through here (``rock.envs.vector.vec_fork``)."""
    sandbox_id, local = rec.handle.rsplit(":", 1)
    try:
        client = await svc.sandboxes.agent(sandbox_id, owner)
        result, _ = await client.call("env.fork", {"env": local, "n": n})
    except (SandboxNotFound, SandboxNotRunning, AgentGone) as exc:
        raise EnvError(f"env {rec.handle} is gone: {exc.message}", "EnvNotFound") from None
    except AgentError as exc:
        raise from_agent(exc) from None
    children = []
    for name in result["envs"]:
        child = EnvRecord(handle=f"{sandbox_id}:{name}", env_id=rec.env_id, owner=owner, sandbox=rec.sandbox,
                          ttl=rec.ttl, made=rec.made, vec=vec)
        svc.add_env(child)
        children.append(child)
    svc.start_reaper()  # the children idle out like any env
    return children, int(result.get("steps", 0))
