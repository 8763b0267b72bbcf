"""Training instances in the admin: where they run, how calls reach them, when they are released.

An instance is an env of the env service (``rock.envs.service.EnvService``) made from the task
package's ``TaskEnv`` in its suite's image: many instances of a pure-computation suite (BFCL,
reasoning-gym) share one sandbox; a code-running suite's instance (HumanEval) gets its own. The
env service supplies placement, the direct socket to the env host and recovery; this service
keeps the instance ids, the idle TTL (5 minutes unless ``ROCK_TRAINING_IDLE_TTL`` says
otherwise) and the data that must not enter a sandbox before evaluation.

Instance ids are also written to the admin's store (``rock.admin.store``): after an admin
restart the env service re-attaches the env sandboxes and ``recover`` maps the ids to their
envs again, so a trainer's open instances go on working. Their idle clocks restart then.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rock.jsonutil import loads
from rock.envs.images import SITE, EnvImageSpec, ImageBuilder
from rock.training import hostsite
from rock.errors import TrainingError
from rock.idle import IdleReaper, Leased
from rock.training.settings import TrainingSettings
from rock.training.suites import EXTERNAL, Suite, make_suites, unavailable

log = logging.getLogger("rock.training")
ENTRY_POINT = "rock_training_tasks.taskenv:TaskEnv"


@dataclass(eq=False)
class Instance(Leased):
    """One training-task instance: the env handle it steps, its owner, and when it was last used
    (its idle TTL)."""

    instance_id: str
    env_type: str
    task_id: str
    owner: str | None
    handle: str
    terminated: bool = False

    def row(self) -> dict:
        """The instance as the admin lists it (its sandbox id instead of the env handle)."""
        return {"instance_id": self.instance_id, "env_type": self.env_type, "task_id": self.task_id,
                "sandbox_id": self.handle.rpartition(":")[0], "created": self.created, "last_used": self.last_used,
                "terminated": self.terminated}


class TrainingService:
    """The admin's training instances (seed 004): profiles, create, step, evaluate, info and release over
    the env service, with ids that survive an admin restart and an idle TTL."""

    def __init__(self, envs, state_dir: Path, base_image: str, python: str, settings: TrainingSettings | None = None,
                 store=None):
        self.envs = envs  # rock.envs.service.EnvService
        self.store = store  # rock.admin.store.Store, or None: ids live in memory only
        self.settings = settings or TrainingSettings()
        self.base_image = base_image
        self.builder = ImageBuilder(Path(state_dir), python, getattr(envs.sandboxes, "settings", None))
        self.suites: dict[str, Suite] = make_suites(python)
        self.instances: dict[str, Instance] = {}
        self.released: collections.OrderedDict[str, str] = collections.OrderedDict()  # id -> why
        self._site: Path | None = None
        self._images: dict[str, str] = {}
        self._image_locks: dict[str, asyncio.Lock] = {}
        self.reaper = IdleReaper("rock-training-reaper", self.reap, self._next_check, lambda: bool(self.instances), log)
        self.ids = IdWriter(store) if store is not None else None

    # -- suites, data, images ------------------------------------------------------------------

    async def site(self) -> Path:
        """The host folder with the suites' data and graders (installed on first use, off the event loop)."""
        if self._site is None:
            self._site = await asyncio.to_thread(hostsite.ensure_site, None, self.builder.python,
                                                 lambda line: log.info("training data: %s", line))
        return self._site

    def suite(self, env_type: str | None) -> Suite:
        """The suite named ``env_type``; a ``TrainingError`` naming the known ones when it is missing,
        unknown or not offered here."""
        if not env_type:
            raise TrainingError("env_type is required; one of " + ", ".join([*self.suites, *EXTERNAL]), "BadRequest")
        if (refused := unavailable(env_type)) is not None:
            raise refused
        suite = self.suites.get(env_type)
        if suite is None:
            raise TrainingError(f"unknown env_type {env_type!r}; known: {', '.join([*self.suites, *EXTERNAL])}",
                                "UnknownEnvType")
        return suite

    async def image(self, suite: Suite) -> str:
        """The suite's env image: the base image plus its packages and the task package."""
        if suite.name in self._images:
            return self._images[suite.name]
        async with self._image_locks.setdefault(suite.name, asyncio.Lock()):
            if suite.name not in self._images:
                site = await self.site()
                spec = EnvImageSpec(base=self.base_image, packages=suite.packages, no_deps=suite.no_deps,
                                    files=suite.files(site))
                image = await self.builder.ensure(spec, lambda line: log.info("training image %s: %s", suite.name, line))
                self._images[suite.name] = image.tag
        return self._images[suite.name]

    async def profile(self, env_type: str, split: str = "train", params: dict | None = None) -> list[str]:
        """The task ids of a suite's ``split`` (``params`` narrow it: BFCL categories, reasoning-gym
        generators, size and seed)."""
        suite = self.suite(env_type)
        return await asyncio.to_thread(suite.ids, await self.site(), split or "train", params or {})

    # -- instances -------------------------------------------------------------------------------

    def get(self, instance_id: str | None, owner: str | None) -> Instance:
        """The caller's live instance ``instance_id`` (its idle clock restarted); another owner's answers
        as missing, a released one says why."""
        if not instance_id:
            raise TrainingError("instance_id is required", "BadRequest")
        inst = self.instances.get(instance_id)
        if inst is None or inst.owner != owner:
            why = self.released.get(instance_id) if inst is None else None
            if why:
                raise TrainingError(f"instance {instance_id} was released ({why}); create a new one", "InstanceReleased")
            raise TrainingError(f"no instance {instance_id!r} (never created, or released long ago)", "InstanceNotFound")
        inst.touch()
        return inst

    async def create(self, env_type: str, task_id: str | None, instance_id: str | None = None,
                     params: dict | None = None, owner: str | None = None) -> dict:
        """A new instance of ``task_id`` in its suite's env image: its first messages and
        ``info.instance_id``. The id is stored before the answer, so it survives an admin restart."""
        suite = self.suite(env_type)
        if not task_id:
            raise TrainingError("task_id is required (get_env_profile lists them)", "BadRequest")
        site = await self.site()
        if suite.check_is_cheap(site):  # a set lookup: a thread hop would cost far more
            suite.check_id(site, task_id)
        else:
            await asyncio.to_thread(suite.check_id, site, task_id)
        if instance_id is not None and (instance_id in self.instances or instance_id in self.released):
            raise TrainingError(f"instance id {instance_id!r} is taken; leave it out to get a fresh one", "InstanceExists")
        if len(self.instances) >= self.settings.max_instances:
            raise TrainingError(f"{self.settings.max_instances} instances are open; release some first", "BadRequest")
        instance_id = instance_id or f"inst-{uuid.uuid4().hex[:16]}"
        self.envs.admit_hosts(owner, 1)  # before a build: a namespace at its env host quota is refused at once
        image = await self.image(suite)
        t0 = time.perf_counter()
        kwargs = {"env_type": env_type, "task_id": task_id, "params": params or {},
                  "payload": suite.payload(site, task_id)}
        args = {"env_id": f"training:{env_type}", "kwargs": kwargs, "timeout": self.settings.call_timeout,
                "entry_point": ENTRY_POINT, "sys_path": [SITE], "python": None, "packages": []}
        sb = (self.envs.reserve_dedicated(owner, image) if suite.dedicated
              else self.envs.reserve_spread(owner, image, self.settings.hosts, self.settings.host_fill))
        rec, first = await self.envs.make_and_reset(sb, args, None, owner)
        inst = Instance(instance_id, env_type, task_id, owner, rec.handle)
        self.instances[instance_id] = inst
        try:
            result = self._unwrap(loads(first)["observation"])
        except BaseException:
            await self.release(instance_id, owner, why="its creation failed")
            raise
        result.setdefault("info", {}).update(instance_id=instance_id, task_id=task_id, env_type=env_type)
        if self.store is not None:
            await self.ids.save({"instance_id": instance_id, "owner": owner, "env_type": env_type,
                                 "task_id": task_id, "handle": inst.handle, "created": inst.created})
        self.reaper.start()
        log.info("training instance %s: %s %s in %s (%.0f ms)", instance_id, env_type, task_id, sb.sandbox_id,
                 (time.perf_counter() - t0) * 1000)
        return result

    @staticmethod
    def _unwrap(obs) -> dict:
        if isinstance(obs, dict) and isinstance(obs.get("error"), dict):
            raise TrainingError(obs["error"].get("message", "task error"), obs["error"].get("kind", "BadRequest"))
        return obs

    async def _call(self, inst: Instance, action: dict) -> dict:
        body = loads(await self.envs.step(inst.handle, action, inst.owner))
        inst.touch()
        return self._unwrap(body["observation"])

    async def step(self, instance_id: str, action, params: dict | None = None, owner: str | None = None) -> dict:
        """One assistant message into the instance: the env's answer, the reward and whether the task
        ended."""
        inst = self.get(instance_id, owner)
        if not isinstance(action, dict) or not action:
            raise TrainingError("action must be a message like {\"role\": \"assistant\", \"content\": \"...\"}",
                                "BadRequest")
        out = await self._call(inst, {"op": "step", "action": action, "params": params or {}})
        inst.terminated = bool(out.get("is_terminated"))
        return out

    async def evaluate(self, instance_id: str, messages=None, params: dict | None = None, owner: str | None = None):
        """The instance's reward by its suite's grader; hidden test data is added here, never taken from
        the caller."""
        inst = self.get(instance_id, owner)
        params = dict(params or {})
        params.pop("hidden", None)  # only the service supplies hidden data
        hidden = self.suites[inst.env_type].hidden(await self.site(), inst.task_id)
        if hidden:
            params["hidden"] = hidden
        return (await self._call(inst, {"op": "evaluate", "messages": messages, "params": params}))["result"]

    async def info(self, instance_id: str, owner: str | None = None):
        """The task's tools and facts as the instance states them."""
        inst = self.get(instance_id, owner)
        return (await self._call(inst, {"op": "info"}))["result"]

    async def release(self, instance_id: str, owner: str | None = None, why: str = "by request") -> bool:
        """True when this call released it; False when it was released already (idempotent)."""
        if instance_id in self.released and instance_id not in self.instances:
            return False
        inst = self.get(instance_id, owner)
        self._forget(instance_id, why)
        try:
            await self.envs.close(inst.handle, owner)
        except Exception as exc:  # noqa: BLE001 - its sandbox may be gone already: released either way
            log.warning("training instance %s: close failed (%s)", instance_id, exc)
        return True

    def _forget(self, instance_id: str, why: str) -> None:
        self.instances.pop(instance_id, None)
        self.released[instance_id] = why
        while len(self.released) > 100_000:
            self.released.popitem(last=False)
        if self.store is not None:  # nobody waits for it; a failure is only logged
            self.ids.delete(instance_id)

    async def recover(self) -> int:
        """After an admin restart (the env service has recovered its envs first): the stored
        instance ids whose envs are back serve again; the others are released with the reason."""
        if self.store is None:
            return 0
        found = 0
        for row in await self.store.instances():
            iid = row["instance_id"]
            if iid in self.instances:
                continue
            if row["handle"] not in self.envs.envs:
                # A store shared by several admins holds their instances too: only a store of
                # this admin's own says the sandbox is gone.
                if not self.store.shared:
                    self._forget(iid, "its sandbox was gone when the admin restarted")
                continue
            self.instances[iid] = Instance(iid, row["env_type"], row["task_id"], row["owner"], row["handle"],
                                           created=row["created"])
            found += 1
        if found:
            log.info("training: %d instance(s) recovered after the admin restart", found)
            self.reaper.start()
        return found

    def list(self, owner: str | None) -> list[dict]:
        """The caller's live instances."""
        return [i.row() for i in self.instances.values() if i.owner == owner]

    # -- idle TTL -----------------------------------------------------------------------------------

    def _next_check(self) -> float:
        return min(i.last_used for i in self.instances.values()) + self.settings.idle_ttl - time.time()

    async def reap(self) -> list[str]:
        """Release every instance idle for the TTL or longer; their ids."""
        now, ttl = time.time(), self.settings.idle_ttl
        idle = [i for i in self.instances.values() if now - i.last_used >= ttl]
        await asyncio.gather(*(self.release(i.instance_id, i.owner, why=f"idle for {ttl:g} s") for i in idle),
                             return_exceptions=True)
        if idle:
            log.info("training reaper: released %d idle instance(s)", len(idle))
        return [i.instance_id for i in idle]

    async def shutdown(self) -> None:
        """Stop the idle reaper and wait for the stored ids to be written."""
        await self.reaper.close()
        if self.ids is not None:
            await self.ids.flushed()


class IdWriter:
    """The instance ids' store writes, batched: the saves and deletes that arrive while one write
    runs go together in the next (one SQLite transaction and thread hop for a burst of creates
    or releases, where a job at concurrency 32 made two per task: ~40 syscalls per task in the
    admin). A save is awaited (a create answers once its id would survive a restart); a delete
    is not, its failure is only logged."""

    def __init__(self, store):
        self.store = store
        self.rows: list[dict] = []
        self.deleted: list[str] = []
        self.waiters: list[asyncio.Future] = []
        self.task: asyncio.Task | None = None

    def save(self, row: dict) -> asyncio.Future:
        """Queue ``row`` for the store; the future resolves once it is written."""
        waiter = asyncio.get_running_loop().create_future()
        self.rows.append(row)
        self.waiters.append(waiter)
        self._kick()
        return waiter

    def delete(self, instance_id: str) -> None:
        """Queue the removal of ``instance_id`` from the store (not awaited: a failure is logged)."""
        self.deleted.append(instance_id)
        self._kick()

    def _kick(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain(), name="rock-training-ids")

    async def _drain(self) -> None:
        while self.rows or self.deleted:
            rows, deleted, waiters = self.rows, self.deleted, self.waiters
            self.rows, self.deleted, self.waiters = [], [], []
            try:
                await self.store.write_instances(rows, deleted)
            except Exception as exc:  # noqa: BLE001 - the saves' creates fail with it; deletes are logged
                if deleted:
                    log.warning("training: %d stored instance id(s) could not be deleted (%s)", len(deleted), exc)
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
            else:
                for w in waiters:
                    if not w.done():
                        w.set_result(None)

    async def flushed(self) -> None:
        """Wait until every queued save and delete has been written."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
