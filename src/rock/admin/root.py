"""The composition root: every long-lived object of one admin process, built here and nowhere else.

``Root`` makes, in this order, the worker (the embedded one, the cluster's client, a proxy's
attached worker or the scale benchmark's simulated cluster), the state store, the sandbox service,
the lifecycle timers, the env service and, on an admin, the gym sessions, the training service,
the Chat hub, the rollout job book and the E2B templates. ``running()`` starts them in that order
and closes them in the reverse one; the app's lifespan is that context and nothing else.

The root is the context every front door is installed with (``install(app, root)``, a ``Ctx``):
a door takes what it uses from it and makes no long-lived object of its own. The app keeps the
root as its one piece of state (``app.state.rock``) for the routes declared at module level.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from rock.admin.auth import Auth
from rock.chat.hub import ChatHub
from rock.admin.context import Ctx
from rock.admin.rollouts import JobBook
from rock.admin.sandboxes import Sandboxes
from rock.admin.sandboxes.lifecycle import Lifecycle
from rock.admin.store.backends import open_store
from rock.admin.templates import Templates
from rock.config import Settings
from rock.envs.catalog import Catalog
from rock.envs.gym.sessions import GymSessions
from rock.envs.images import ImageBuilder
from rock.envs.service import EnvService
from rock.training.service import TrainingService
from rock.worker.protocol import WorkerOps

log = logging.getLogger("rock.admin.root")
Step = Callable[[], Awaitable[object]]


def make_worker(settings: Settings) -> WorkerOps:
    """The worker ``settings`` ask for: the simulated cluster (the scale benchmark's stand-in nodes,
    never for serving), the cluster's client, a proxy's attached worker (beside the admin on its
    state dir: it uses the admin's sandboxes), or the embedded single-machine worker."""
    if settings.simulated_cluster:
        from rock.cluster.simulated import SimulatedCluster

        return SimulatedCluster(settings)
    if settings.cluster:
        from rock.cluster.client import ClusterWorker

        return ClusterWorker(settings)
    if settings.role == "proxy":
        from rock.worker.attached import AttachedWorker

        return AttachedWorker(settings)
    from rock.worker.worker import Worker

    return Worker(settings)


async def _warm_up(images: list[str]) -> None:
    """ROCK's warmup.images: have them in the engine before the first sandbox asks (missing ones pulled)."""
    from rock.runtime.docker.images import ensure_image

    for image in images:
        try:
            await asyncio.to_thread(ensure_image, image)
            log.info("warmup: image %s is ready", image)
        except Exception as exc:  # noqa: BLE001 - a warmup failure is reported, the admin serves on
            log.warning("warmup: image %s: %s", image, getattr(exc, "message", None) or exc)


class Root(Ctx):
    """One admin process's objects. ``worker`` may be passed in (tests, embedding): then the caller
    starts and closes it; otherwise it is made from ``settings`` and runs with the root. Sandboxes
    keep running when the root closes."""

    def __init__(self, settings: Settings, worker: WorkerOps | None = None):
        self.own_worker = worker is None
        worker = make_worker(settings) if worker is None else worker
        self.store = store = open_store(settings.store_url, Path(settings.state_dir))
        super().__init__(settings=settings, auth=Auth(settings.tokens), sandboxes=Sandboxes(settings, worker, store),
                         worker=worker, started_at=time.time())
        admin = settings.role == "admin"
        self.lifecycle = Lifecycle(self.sandboxes, settings.auto_delete_seconds)
        broker = getattr(getattr(getattr(worker, "egress", None), "gate", None), "broker", None)
        if broker is not None:  # the egress relay asks the vault for a value per request to a bound host
            broker.lookup = self.sandboxes.secrets.value_for
        if worker.clustered:  # a cluster's nodes' relays get the values of their sandboxes' secrets, in memory
            worker.vault = self.sandboxes.secrets
            self.sandboxes.secrets.on_change = worker.secret_changed
        self.envs = EnvService(self.sandboxes, Catalog(settings.state_dir, settings.host_python), settings.envs)
        if admin:  # a proxy creates nothing: no gym session, training instance, Chat endpoint, job or template
            builder = ImageBuilder(settings.state_dir, settings.host_python, settings)
            self.gym = GymSessions(self.envs, builder, settings.default_image)
            self.training = TrainingService(self.envs, settings.state_dir, settings.default_image, settings.host_python,
                                            settings.training, store=store)
            self.chat = ChatHub(settings.state_dir, self.sandboxes, settings.chat,
                                open_proxy=not self.auth.enabled)
            worker.listeners.append(self.chat)  # notices from `rock model-service ...` inside sandboxes
            self.jobs = JobBook(settings.state_dir / "jobs")
            self.templates = Templates(self)
        self._warmup: asyncio.Task | None = None

    def steps(self) -> list[tuple[str, Step | None, Step | None]]:
        """``(name, start, close)`` of each part, in the order they start (a part that only starts
        or only closes has None for the other). Closing runs every close, in the reverse order."""
        admin = self.settings.role == "admin"
        worker, sandboxes = self.worker, self.sandboxes
        steps: list[tuple[str, Step | None, Step | None]] = []
        if self.own_worker:
            steps.append(("worker", worker.start, lambda: worker.close(stop_sandboxes=False)))
        steps.append(("sandboxes", self._load_sandboxes, sandboxes.close))
        if admin:
            steps.append(("lifecycle", self._start_timers, self.lifecycle.close))
            steps.append(("warmup", self._start_warmup, self._cancel_warmup))
            # after the sandboxes are reconciled: env sandboxes that outlived a restart serve again
            steps.append(("envs", self.envs.recover, self._close_envs))
            assert self.gym is not None and self.training is not None and self.chat is not None
            steps.append(("gym", self.gym.builder.reap, self.gym.shutdown))  # stale builds go
            steps.append(("training", self.training.recover, self.training.shutdown))  # stored instance ids serve again
            steps.append(("chat", None, self.chat.close))  # held calls end, upstream connections close
            assert self.templates is not None  # records from the store (an older admin's file moved in once)
            steps.append(("templates", self.templates.open, self.templates.close))
        else:
            steps.append(("envs", None, self._close_envs))
        return steps

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Root]:
        """Open the store, start every part in order; on leaving, close them in the reverse order
        (all of them, also when a start failed), the store last."""
        await self.store.open()
        steps = self.steps()
        try:
            for name, start, _ in steps:
                if start is not None:
                    await start()
                    log.debug("started %s", name)
            log.info("rock admin ready: role=%s backend=%s state_dir=%s", self.settings.role,
                     self.worker.backend_name, self.settings.state_dir)
            yield self
        finally:
            for name, _, close in reversed(steps):
                if close is not None:
                    await close()
                    log.debug("closed %s", name)
            await self.store.close()

    async def _load_sandboxes(self) -> None:
        if self.settings.role == "admin" and not self.store.shared:
            await self.sandboxes.reconcile()
        else:  # a proxy, or one of several admins: the lease holder's sweep reconciles
            await self.sandboxes.held.load()

    async def _start_timers(self) -> None:
        self.sandboxes.start_reaper()
        self.lifecycle.start()  # timed archive/delete: with a shared store only the reaper-lease holder acts

    async def _start_warmup(self) -> None:
        if self.settings.warmup_images:
            self._warmup = asyncio.create_task(_warm_up(self.settings.warmup_images), name="rock-warmup")

    async def _cancel_warmup(self) -> None:
        if self._warmup is not None:
            self._warmup.cancel()

    async def _close_envs(self) -> None:
        """Stop the env reaper; env sandboxes stay (re-attached, TTL-reaped) like any sandbox."""
        await self.envs.shutdown(stop_sandboxes=False)
