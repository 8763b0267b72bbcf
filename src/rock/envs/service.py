"""Env hosting in the admin: where envs go, how calls reach them, when they are reclaimed.

Envs run inside sandboxes, hosted by each sandbox's agent (``agent/envhost/ops.py``), never here.
Many envs share one small sandbox (``EnvSettings.envs_per_sandbox``); this service packs new
envs into the owner's env sandboxes with free slots and starts another sandbox when all are full.

An env is addressed by a handle ``<sandbox_id>:<env>`` (``:`` cannot occur in a sandbox id). The
GEM wire protocol calls it ``sandbox_id``. Routing a call needs nothing but the handle, so
envs keep working across an admin restart (their sandboxes are re-attached); the in-memory
records (``rock.envs.records``) serve placement, listing and the idle TTL, and are rebuilt
after a restart (``rock.envs.recovery``).

Reclaiming is the service's own: an env nobody used for ``idle_ttl`` (or its own ``ttl``, a gym
session's lease) is closed, and an env sandbox left empty for ``sandbox_linger`` is stopped,
by ``reap``, which a timer (``rock.idle.IdleReaper``) runs at the soonest of those deadlines.

Sandboxes come from the admin's ``Sandboxes`` (records, owner checks, state machine): anything
with ``start(request, owner, meta, wait)``, ``agent(sandbox_id, owner)`` and
``delete(sandbox_id, owner)``; recovery reads its ``records``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable

from rock.actions.sandbox import SandboxStartRequest
from rock.envs import recovery
from rock.envs.catalog import Catalog, Runner
from rock.envs.errors import EnvError, from_agent
from rock.envs.forking import EnvForks
from rock.envs.hostlink import HostLinks
from rock.envs.records import EnvRecord, EnvSandbox
from rock.envs.settings import EnvSettings
from rock.idle import IdleReaper
from rock.errors import AgentError, AgentGone, RockError, SandboxNotFound, SandboxNotRunning

log = logging.getLogger("rock.envs")


def split_handle(handle: str) -> tuple[str, str]:
    """A handle's (sandbox id, env name); ``EnvNotFound`` for a string that is not a handle."""
    sandbox_id, sep, local = handle.rpartition(":")
    if not sep or not sandbox_id or not local:
        raise EnvError(f"{handle!r} is not an env handle (expected '<sandbox_id>:<env>', as returned by make)", "EnvNotFound")
    return sandbox_id, local


class EnvService:
    """The admin's envs (see the module): places them in env sandboxes, routes calls to them by
    handle, and closes and stops what went idle. Vector envs (``rock.envs.vector``), gym sessions
    (``rock.envs.gym.sessions``) and training instances are made through it; forks are its
    composed ``forks`` (``rock.envs.forking``)."""

    def __init__(self, sandboxes, catalog: Catalog, settings: EnvSettings | None = None):
        self.sandboxes = sandboxes
        self.catalog = catalog
        self.settings = settings or EnvSettings()
        self.envs: dict[str, EnvRecord] = {}
        self.pools: dict[tuple, list[EnvSandbox]] = {}
        self.by_id: dict[str, EnvSandbox] = {}
        self.vecs: dict = {}  # vec_id -> rock.envs.vector.VecRecord
        # reset/step/batch go straight to the env host where a link is open
        self.links = HostLinks(lambda sandbox_id: self.sandboxes.worker.handle(sandbox_id))
        # closes idle envs and stops empty env sandboxes (reap) at their deadlines
        self.reaper = IdleReaper("rock-env-reaper", self.reap, self._next_check, self._watching, log)
        # family prefix -> async fn(env_id) -> (extra env.make args, place): envs of other families
        self.resolvers: dict[str, Callable[[str], Awaitable[tuple[dict, dict]]]] = {}
        self.forks = EnvForks(self)  # fork(n) of an env: replay or a full sandbox fork (rock.envs.forking)

    # -- placement ---------------------------------------------------------------------------

    def _key(self, owner: str | None, image: str | None, network: bool) -> tuple:
        return (owner, image or self.settings.image, network)

    def reserve(self, owner: str | None, image: str | None, count: int,
                network: bool = False, hosts: bool = True) -> list[tuple[EnvSandbox, int]]:
        """Claim ``count`` env slots, filling the owner's sandboxes before starting new ones.

        Synchronous on purpose: concurrent makes see each other's claims and share a new
        sandbox instead of each starting one. ``hosts``: the slots are env hosts, counted against
        the owner's quota (a catalog probe's passing slot is not)."""
        if hosts:
            self.admit_hosts(owner, count)
        key = self._key(owner, image, network)
        pool = self.pools.setdefault(key, [])
        cap = self.settings.envs_per_sandbox
        plan: list[tuple[EnvSandbox, int]] = []
        for sb in pool:
            take = min(count, cap - len(sb.envs) - sb.reserved)
            if take > 0:  # a sandbox whose start failed has already left the pool
                plan.append((sb, take))
                count -= take
            if count == 0:
                break
        while count > 0:
            sb = self._new_shared(key, owner, image, network)
            take = min(count, cap)
            plan.append((sb, take))
            count -= take
        for sb, take in plan:
            sb.reserved += take
            sb.empty_since = None
        return plan

    def reserve_spread(self, owner: str | None, image: str | None, hosts: int, fill: int) -> EnvSandbox:
        """One env slot for a CPU-bound env (a training task's grader) in the least loaded of the
        owner's sandboxes of ``image``. An env host is one thread, so envs packed into one
        sandbox share one core: another sandbox starts while fewer than ``hosts`` exist and
        each holds ``fill`` envs already (or when all are full)."""
        self.admit_hosts(owner, 1)
        key = self._key(owner, image, False)
        pool = self.pools.setdefault(key, [])
        cap = self.settings.envs_per_sandbox

        def load(sb: EnvSandbox) -> int:
            return len(sb.envs) + sb.reserved

        best = min((sb for sb in pool if load(sb) < cap), key=load, default=None)
        if best is None or (len(pool) < hosts and load(best) >= fill):
            best = self._new_shared(key, owner, image, False)
        best.reserved += 1
        best.empty_since = None
        return best

    async def catalog_entries(self, owner: str | None, deep: bool) -> list:
        """GEM's catalog and the registered envs: probed in an env sandbox of ``owner``'s the first time, then
        read from the cache."""
        mode = "deep" if deep else "ids"
        runner = None if self.catalog.is_cached(mode) else await self.probe_runner(owner)
        return await self.catalog.entries(deep=deep, runner=runner)

    def env_hosts(self, owner: str | None) -> int:
        """The owner's env hosts: open envs (GEM, gym sessions, training instances) and slots claimed for them."""
        return sum(len(sb.envs) + sb.reserved for sb in self.by_id.values() if sb.owner == owner)

    def admit_hosts(self, owner: str | None, count: int) -> None:
        """Refuse (429, the limit named) ``count`` more env hosts past the owner's quota; the
        sandboxes they need are admitted by their starts (``Sandboxes.start``)."""
        admission = getattr(self.sandboxes, "admission", None)
        if admission is not None and admission.quota(owner) is not None:
            admission.check_env_hosts(owner, self.env_hosts(owner), count)

    def _new_shared(self, key: tuple, owner: str | None, image: str | None, network: bool) -> EnvSandbox:
        sb = EnvSandbox(sandbox_id=f"env-{uuid.uuid4().hex[:12]}", owner=owner, key=key)
        sb.ready = asyncio.ensure_future(self._start_sandbox(sb, image, network))
        self.pools.setdefault(key, []).append(sb)
        self.by_id[sb.sandbox_id] = sb
        return sb

    def adopt(self, sandbox_id: str, owner: str | None, image: str | None, network: bool) -> EnvSandbox:
        """Hold an env sandbox that is running already (one that outlived an admin restart,
        ``rock.envs.recovery``) in its owner's pool: new envs may go in at once."""
        sb = EnvSandbox(sandbox_id=sandbox_id, owner=owner, key=self._key(owner, image, network))
        sb.ready = asyncio.get_running_loop().create_future()
        sb.ready.set_result(None)
        self.pools.setdefault(sb.key, []).append(sb)
        self.by_id[sb.sandbox_id] = sb
        return sb

    def reserve_dedicated(self, owner: str | None, image: str | None, memory: str | None = None,
                          cpus: float | None = None) -> EnvSandbox:
        """One slot in a new sandbox nobody else joins (envs that run a user's code, gym sessions),
        sized by the caller and stopped as soon as its env closes."""
        self.admit_hosts(owner, 1)
        sb = EnvSandbox(sandbox_id=f"env-{uuid.uuid4().hex[:12]}", owner=owner, key=(owner, image, False, "dedicated"),
                        dedicated=True, memory=memory, cpus=cpus, reserved=1)
        sb.ready = asyncio.ensure_future(self._start_sandbox(sb, image, False))
        self.by_id[sb.sandbox_id] = sb
        return sb

    async def _start_sandbox(self, sb: EnvSandbox, image: str | None, network: bool) -> None:
        s = self.settings
        env = {k: os.environ[k] for k in s.pass_env if k in os.environ}
        request = SandboxStartRequest(
            sandbox_id=sb.sandbox_id, image=image or s.image, memory=sb.memory or s.sandbox_memory,
            cpus=sb.cpus or s.sandbox_cpus,
            auto_clear_seconds=int(s.idle_ttl + s.sandbox_linger + 60), env=env or None,
            network=network,  # only user envs that pip-install packages get a network
        )
        try:
            await self.sandboxes.start(request, sb.owner, {}, wait=True)
        except BaseException:
            self._forget_sandbox(sb)
            raise

    def _forget_sandbox(self, sb: EnvSandbox) -> None:
        pool = self.pools.get(sb.key, [])
        if sb in pool:
            pool.remove(sb)
        self.by_id.pop(sb.sandbox_id, None)

    # -- single envs -------------------------------------------------------------------------

    async def make_args(self, env_id: str, kwargs: dict, timeout: float | None) -> tuple[dict, dict]:
        """The agent's env.make arguments, and where the env must run (image, network).

        A family prefix with a resolver (``gym:`` -> its env image) answers first, then registered
        user envs, then gem."""
        args = {"env_id": env_id, "kwargs": kwargs, "timeout": timeout or self.settings.call_timeout}
        resolver = self.resolvers.get(env_id.partition(":")[0]) if ":" in env_id else None
        if resolver is not None:
            extra, place = await resolver(env_id)
            return {**args, **extra}, place
        user = self.catalog.user_envs().get(env_id)
        if user is None:
            return args, {"image": None, "network": False}
        args.update(entry_point=user.entry_point, packages=user.packages, python=user.python,
                    sys_path=user.sys_path, kwargs={**user.kwargs, **kwargs})
        return args, {"image": user.image, "network": bool(user.packages)}

    async def make_in(self, sb: EnvSandbox, args: dict, owner: str | None, vec: str | None = None,
                      again: bool = True) -> tuple[EnvRecord, bytes]:
        """The env made in ``sb`` (reserved by ``reserve``: the slot is given back here either
        way), and the body of the host's answer (the reset's, when ``args`` asked for one with
        ``reset``). A pooled sandbox that ended underneath is left, and the env goes to a new one, once."""
        try:
            await asyncio.shield(sb.ready)
            client = await self.sandboxes.agent(sb.sandbox_id, owner)
            result, body = await client.call("env.make", args)
        except AgentError as exc:
            raise await self._make_error(args["env_id"], exc) from None
        except (SandboxNotRunning, SandboxNotFound):
            # The pooled sandbox ended underneath us (deleted through the sandbox API, cleared,
            # crashed): it leaves the pool, and the env goes to a new one, once.
            if not again or sb.dedicated:
                raise
            self._forget_sandbox(sb)
            self.links.drop(sb.sandbox_id)
            [(fresh, _)] = self.reserve(owner, sb.key[1], 1, sb.key[2])
            return await self.make_in(fresh, args, owner, vec, again=False)
        finally:
            sb.reserved -= 1
        if result.get("socket"):
            await self.links.connect(sb.sandbox_id, result["socket"])
        rec = EnvRecord(handle=f"{sb.sandbox_id}:{result['env']}", env_id=args["env_id"], owner=owner, sandbox=sb,
                        vec=vec, made=result)
        self.add_env(rec)
        self.start_reaper()
        return rec, body

    async def make_env(self, sb: EnvSandbox, args: dict, owner: str | None) -> tuple[EnvRecord, dict]:
        """An env made in ``sb`` with the agent's ``env.make`` arguments; its record and what the host said."""
        rec, _ = await self.make_in(sb, args, owner)
        return rec, rec.made

    async def make_and_reset(self, sb: EnvSandbox, args: dict, seed: int | None,
                             owner: str | None) -> tuple[EnvRecord, bytes]:
        """An env made in ``sb`` and reset, in one call to its host: its record and the reset's body."""
        return await self.make_in(sb, {**args, "reset": seed}, owner)

    async def _make_error(self, env_id: str, exc: AgentError) -> RockError:
        if exc.kind == "EnvNotFound" and env_id.partition(":")[0] not in self.resolvers:  # those name their own
            return await self.catalog.unknown(env_id, await self.probe_runner_or_none())
        return self.catalog.unavailable(env_id) or from_agent(exc)

    async def make(self, env_id: str, kwargs: dict | None = None, owner: str | None = None,
                   timeout: float | None = None) -> EnvRecord:
        """One env of ``env_id`` (gem's, a registered user env's, or a family's with a resolver),
        packed into the owner's env sandboxes (``reserve``); its record, whose ``handle`` the
        caller addresses it by."""
        args, place = await self.make_args(env_id, dict(kwargs or {}), timeout)
        if (refused := self.catalog.unavailable(env_id)) is not None:
            raise refused
        [(sb, _)] = self.reserve(owner, place["image"], 1, place["network"])
        return (await self.make_in(sb, args, owner))[0]

    # -- the hot path ----------------------------------------------------------------------------

    def add_env(self, rec: EnvRecord) -> None:
        """Hold a new env's record: listed, counted in its sandbox, under the idle TTL."""
        rec.sandbox.envs.add(rec.handle)
        self.envs[rec.handle] = rec

    async def fork(self, handle: str, n: int, owner: str | None, how: str = "replay") -> tuple[list[EnvRecord], int]:
        """``n`` envs that go on from where ``handle``'s env is (``how``: replay or full), and how
        many actions each replayed; ``rock.envs.forking.EnvForks.fork``."""
        return await self.forks.fork(handle, n, owner, how)

    async def env_call(self, sandbox_id: str, owner: str | None, op: str, args: dict, body: bytes = b"") -> bytes:
        """``op`` (reset/step/batch) on the sandbox's env host: straight to the host's socket when
        connected, else through the agent. The owner check and the TTL refresh happen either way."""
        agent = await self.sandboxes.agent(sandbox_id, owner)
        link = self.links.get(sandbox_id)
        if link is not None:
            try:
                return await link.call(op, args, poll=op != "batch", body=body)
            except AgentGone:
                self.links.drop(sandbox_id)  # the host died: the agent knows why
            except AgentError as exc:
                if exc.kind != "EnvNotFound":  # maybe lost with an earlier host: the agent knows
                    raise from_agent(exc) from None
        try:
            return (await agent.call("env." + op, args, body))[1]
        except AgentError as exc:
            raise from_agent(exc) from None

    async def call(self, handle: str, op: str, args: dict, owner: str | None, body: bytes = b"") -> bytes:
        """One env op (``reset`` / ``step`` / a gym op); returns the host's body untouched."""
        sandbox_id, local = self.owned(handle, owner)
        args["env"] = local
        try:
            body = await self.env_call(sandbox_id, owner, op, args, body)
        except (SandboxNotFound, SandboxNotRunning, AgentGone) as exc:
            self._drop(handle)
            raise EnvError(f"env {handle} is gone: {exc.message}", "EnvNotFound") from None
        rec = self.envs.get(handle)
        if rec is not None:
            rec.touch()
        return body

    async def reset(self, handle: str, seed: int | None, owner: str | None) -> bytes:
        """Reset the env (with ``seed``, or unseeded); the host's body, untouched."""
        return await self.call(handle, "reset", {"seed": seed}, owner)

    async def step(self, handle: str, action, owner: str | None) -> bytes:
        """One step of the env with ``action``; the host's body, untouched."""
        return await self.call(handle, "step", {"action": action}, owner)

    async def close(self, handle: str, owner: str | None) -> bool:
        """Close the env and forget its record (a dedicated sandbox is stopped with it); whether
        its host had it open. Another namespace's env, or a gone one, is answered False."""
        split_handle(handle)  # a malformed handle is the caller's error, said so
        try:
            sandbox_id, local = self.owned(handle, owner)
        except EnvError:
            return False  # another namespace's env: answered as a missing one is, nothing of it touched
        try:
            client = await self.sandboxes.agent(sandbox_id, owner)
            result, _ = await client.call("env.close", {"env": local})
        except (SandboxNotFound, SandboxNotRunning, AgentGone):
            result = {"closed": False}
        except AgentError as exc:
            raise from_agent(exc) from None
        finally:
            rec = self.envs.get(handle)
            self._drop(handle)
            if rec is not None and rec.sandbox.dedicated:
                await self.stop_sandbox(rec.sandbox)
        return bool(result.get("closed"))

    def owned(self, handle: str, owner: str | None) -> tuple[str, str]:
        """The handle's (sandbox id, env name) when the caller may touch it. The one ownership
        check of every call by handle, made before anything is changed: the error paths drop a
        gone env's record and close stops a dedicated sandbox, so another namespace's handle
        must never reach them. It is told exactly what a handle whose sandbox is missing is told."""
        sandbox_id, local = split_handle(handle)
        rec = self.envs.get(handle)
        if rec is not None and rec.owner != owner:
            raise EnvError(f"env {handle} is gone: sandbox {sandbox_id} not found", "EnvNotFound")
        return sandbox_id, local

    def _drop(self, handle: str) -> None:
        rec = self.envs.pop(handle, None)
        if rec is not None:
            rec.sandbox.envs.discard(handle)
            if not rec.sandbox.envs and not rec.sandbox.reserved:
                rec.sandbox.empty_since = time.time()

    # -- catalog probes run inside an env sandbox ------------------------------------------------

    async def running_sandbox(self, owner: str | None, image: str | None) -> EnvSandbox:
        """A running env sandbox of ``image`` to run a probe in (shared, not claimed: an empty one
        lingers and is reclaimed like any other)."""
        [(sb, _)] = self.reserve(owner, image, 1, False, hosts=False)
        try:
            await asyncio.shield(sb.ready)
        finally:
            sb.reserved -= 1
            if not sb.envs and not sb.reserved:
                sb.empty_since = time.time()
        return sb

    async def probe_runner(self, owner: str | None = None) -> Runner:
        """Run the catalog probe in an env sandbox: gem's code never runs in the admin process."""
        sb = await self.running_sandbox(owner, None)
        source = self.catalog_probe_source()

        async def run(args: list[str]) -> bytes:
            client = await self.sandboxes.agent(sb.sandbox_id, owner)
            command = 'exec "$ROCK_HOST_PYTHON" -I - ' + " ".join(args)
            result = await client.exec(command, shell=True, timeout=600, stdin=source)
            if result.exit_code != 0:
                raise EnvError(f"the env probe failed in {sb.sandbox_id}: {result.stderr[-1500:]}", "EnvUnavailable")
            return result.stdout.encode()

        return run

    async def probe_runner_or_none(self) -> Runner | None:
        """``probe_runner()``'s runner, or None where no env sandbox can start (the catalog then
        probes in a local process)."""
        try:
            return await self.probe_runner()
        except RockError:
            return None  # no sandbox can start: fall back to a local probe process

    @staticmethod
    def catalog_probe_source() -> bytes:
        """The catalog's probe script, fed to the sandbox's Python on stdin."""
        from rock.envs.catalog import PROBE_SCRIPT

        return PROBE_SCRIPT.read_bytes()

    # -- listing -----------------------------------------------------------------------------

    def envs_by_sandbox(self) -> dict[str, list[dict]]:
        """For the sandbox list: which envs each env sandbox hosts (sandbox_id -> envs)."""
        out: dict[str, list[dict]] = {sid: [] for sid in self.by_id}
        for rec in self.envs.values():
            out.setdefault(rec.sandbox.sandbox_id, []).append(
                {"handle": rec.handle, "env_id": rec.env_id, "created": rec.created,
                 "last_used": self._last_used(rec), "vec": rec.vec})
        return out

    # -- the idle TTL, shutdown, recovery after an admin restart ---------------------------------

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
        """Close envs idle past the TTL and stop env sandboxes empty past the linger time; the
        handles closed and the sandbox ids stopped."""
        now, s = time.time(), self.settings
        idle = [h for h, r in self.envs.items() if now - self._last_used(r) >= (r.ttl or s.idle_ttl)]
        for vec_id in {self.envs[h].vec for h in idle if self.envs[h].vec}:
            self.vecs.pop(vec_id, None)
        await asyncio.gather(*(self.close(h, self.envs[h].owner) for h in idle), return_exceptions=True)
        empty = [sb for sb in list(self.by_id.values())
                 if sb.empty_since is not None and not sb.envs and not sb.reserved and now - sb.empty_since >= s.sandbox_linger]
        for sb in empty:
            self._forget_sandbox(sb)
            self.links.drop(sb.sandbox_id)
        await asyncio.gather(*(self._stop(sb) for sb in empty), return_exceptions=True)
        if idle or empty:
            log.info("env reaper: closed %d idle env(s), stopped %d empty env sandbox(es)", len(idle), len(empty))
        return idle, [sb.sandbox_id for sb in empty]

    async def stop_sandbox(self, sb: EnvSandbox) -> None:
        """Forget an env sandbox and delete it: a dedicated one whose env closed, or whose env
        never came up (a gym session's)."""
        self._forget_sandbox(sb)
        await self._stop(sb)

    async def _stop(self, sb: EnvSandbox) -> None:
        try:
            await self.sandboxes.delete(sb.sandbox_id, sb.owner)  # nobody restarts an env host
        except SandboxNotFound:
            pass

    async def shutdown(self, stop_sandboxes: bool = True) -> None:
        """Stop the reaper and close the direct links to env hosts; ``stop_sandboxes``: also
        forget every record and delete every env sandbox (False on an admin shutdown: they
        outlive it and are recovered by the next admin)."""
        await self.reaper.close()
        self.links.close()
        if stop_sandboxes:
            sbs = list(self.by_id.values())
            self.envs.clear()
            self.by_id.clear()
            self.pools.clear()
            await asyncio.gather(*(self._stop(sb) for sb in sbs), return_exceptions=True)

    async def recover(self) -> int:
        """Rebuild the records of env sandboxes that outlived an admin restart; how many envs were
        found (``rock.envs.recovery.recover``)."""
        return await recovery.recover(self)
