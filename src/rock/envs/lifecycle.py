"""Env lifecycle: the records, the idle TTL reaper, recovery after an admin restart, shutdown.

Part of ``EnvService`` (a mixin): an env nobody used for ``idle_ttl`` is closed; an env sandbox
left empty for ``sandbox_linger`` is stopped; env sandboxes that outlived an admin restart are
listed again and put back under the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from rock.errors import RockError, SandboxNotFound

log = logging.getLogger("rock.envs")


@dataclass(eq=False)
class EnvSandbox:
    sandbox_id: str
    owner: str | None
    key: tuple
    envs: set[str] = field(default_factory=set)
    reserved: int = 0
    ready: asyncio.Future | None = None
    empty_since: float | None = None
    # A sandbox of its own for one env (a gym session): sized for it, stopped when it closes.
    dedicated: bool = False
    memory: str | None = None
    cpus: float | None = None


@dataclass(eq=False)
class EnvRecord:
    """One open env as the service holds it: its handle, owner, the sandbox it lives in, and the
    times its idle TTL is counted from."""

    handle: str
    env_id: str
    owner: str | None
    sandbox: EnvSandbox
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    vec: str | None = None
    ttl: float | None = None  # idle time before it is closed; None: the service's idle_ttl
    made: dict = field(default_factory=dict)  # what the env host answered to its make


class Lifecycle:
    """Mixed into EnvService: works on its records (envs, by_id, vecs) and its close()."""

    def start_reaper(self, deadline_changed: bool = False) -> None:
        """Start the reaper, or (``deadline_changed``: an env with a shorter TTL than any before,
        a gym session's lease) wake it to sleep again until the new soonest expiry."""
        self.reaper.start(sooner=deadline_changed)

    def _watching(self) -> bool:
        return bool(self.envs or self.by_id)

    def _next_check(self) -> float:
        now, soonest = time.time(), 30.0
        s = self.settings
        for rec in self.envs.values():
            soonest = min(soonest, self._last_used(rec) + (rec.ttl or s.idle_ttl) - now)
        for sb in self.by_id.values():
            if sb.empty_since is not None:
                soonest = min(soonest, sb.empty_since + s.sandbox_linger - now)
        return soonest

    def _last_used(self, rec: EnvRecord) -> float:
        vec = self.vecs.get(rec.vec) if rec.vec else None
        return vec.last_used if vec is not None else rec.last_used

    async def reap(self) -> tuple[list[str], list[str]]:
        """Close envs idle past the TTL and stop env sandboxes empty past the linger time."""
        now, s = time.time(), self.settings
        idle = [h for h, r in self.envs.items() if now - self._last_used(r) >= (r.ttl or s.idle_ttl)]
        for vec_id in {self.envs[h].vec for h in idle if self.envs[h].vec}:
            self.vecs.pop(vec_id, None)
        await asyncio.gather(*(self.close(h, self.envs[h].owner) for h in idle), return_exceptions=True)
        empty = [sb for sb in list(self.by_id.values())
                 if sb.empty_since is not None and not sb.envs and not sb.reserved and now - sb.empty_since >= s.sandbox_linger]
        for sb in empty:
            self._forget_sandbox(sb)
            self.drop_direct(sb.sandbox_id)
        await asyncio.gather(*(self._stop(sb) for sb in empty), return_exceptions=True)
        if idle or empty:
            log.info("env reaper: closed %d idle env(s), stopped %d empty env sandbox(es)", len(idle), len(empty))
        return idle, [sb.sandbox_id for sb in empty]

    async def _stop(self, sb: EnvSandbox) -> None:
        try:
            await self.sandboxes.delete(sb.sandbox_id, sb.owner)  # nobody restarts an env host
        except SandboxNotFound:
            pass

    async def shutdown(self, stop_sandboxes: bool = True) -> None:
        await self.reaper.close()
        for _, client in self.direct.values():
            client.close()
        self.direct.clear()
        if stop_sandboxes:
            sbs = list(self.by_id.values())
            self.envs.clear()
            self.by_id.clear()
            self.pools.clear()
            await asyncio.gather(*(self._stop(sb) for sb in sbs), return_exceptions=True)

    # -- after an admin restart ------------------------------------------------------------------

    async def recover(self) -> int:
        """Rebuild the records of env sandboxes that outlived an admin restart (their envs keep
        working by handle anyway; this restores listing, the idle TTL and slot accounting)."""
        records = getattr(self.sandboxes, "records", {})
        default_image = getattr(getattr(self.sandboxes, "settings", None), "default_image", None)
        found = 0
        for record in list(records.values()):
            if record.state != "running" or not record.sandbox_id.startswith("env-") or record.sandbox_id in self.by_id:
                continue
            try:
                agent = await self.sandboxes.agent(record.sandbox_id, record.owner)
                listing, _ = await agent.call("env.list")
            except (RockError, OSError) as exc:
                log.warning("env sandbox %s: cannot list its envs (%s)", record.sandbox_id, exc)
                continue
            image = None if record.image in (None, default_image) else record.image
            sb = EnvSandbox(sandbox_id=record.sandbox_id, owner=record.owner,
                            key=self._key(record.owner, image, bool(record.spec.get("network"))))
            sb.ready = asyncio.get_running_loop().create_future()  # running already: new envs may go in
            sb.ready.set_result(None)
            self.pools.setdefault(sb.key, []).append(sb)
            self.by_id[sb.sandbox_id] = sb
            for env in listing["envs"]:
                if env.get("lost"):
                    continue
                handle = f"{sb.sandbox_id}:{env['env']}"
                self.envs[handle] = EnvRecord(handle=handle, env_id=env["env_id"], owner=record.owner, sandbox=sb)
                sb.envs.add(handle)
                found += 1
            if not sb.envs:
                sb.empty_since = time.time()
            for host in listing.get("hosts", ()):
                if host.get("socket"):
                    await self.connect_direct(sb.sandbox_id, host["socket"])
        if self.by_id:
            self.start_reaper()
        return found

