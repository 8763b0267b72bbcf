"""``fork(n)`` of a GEM/gym env by its handle: n envs that go on from where it is.

How, on every backend: the env host makes the env again ``n`` times in the same sandbox and
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
"""

from __future__ import annotations

from rock.envs.errors import EnvError, from_agent
from rock.envs.lifecycle import EnvRecord
from rock.errors import AgentError, AgentGone, SandboxNotFound, SandboxNotRunning

MAX_FORK = 64  # children per call: a GRPO group is 8-64; more is a mistake or a flood


class Forking:
    """Mixed into EnvService (its ``envs`` records, ``owned`` and ``sandboxes``)."""

    async def fork(self, handle: str, n: int, owner: str | None) -> tuple[list[EnvRecord], int]:
        """The children's records, and how many actions each replayed."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_FORK:
            raise EnvError(f"fork count must be 1 to {MAX_FORK}, not {n!r}", "BadRequest")
        sandbox_id, local = self.owned(handle, owner)
        rec = self.envs.get(handle)
        if rec is None or rec.vec is not None:
            # Unknown here (closed, another owner's, or made before an admin restart): as missing.
            what = "an env of a vector env; fork single envs" if rec is not None else "not found"
            raise EnvError(f"env {handle} cannot be forked: {what}", "EnvNotFound" if rec is None else "BadRequest")
        if rec.sandbox.dedicated:
            raise EnvError(f"env {handle} has a sandbox of its own, stopped when it closes: it cannot be forked",
                           "BadRequest")
        try:
            client = await self.sandboxes.agent(sandbox_id, owner)
            result, _ = await client.call("env.fork", {"env": local, "n": n})
        except (SandboxNotFound, SandboxNotRunning, AgentGone) as exc:
            raise EnvError(f"env {handle} is gone: {exc.message}", "EnvNotFound") from None
        except AgentError as exc:
            raise from_agent(exc) from None
        children = []
        for name in result["envs"]:
            child = EnvRecord(handle=f"{sandbox_id}:{name}", env_id=rec.env_id, owner=owner, sandbox=rec.sandbox,
                              ttl=rec.ttl, made=rec.made)
            rec.sandbox.envs.add(child.handle)
            self.envs[child.handle] = child
            children.append(child)
        self.start_reaper()  # the children idle out like any env
        return children, int(result.get("steps", 0))
