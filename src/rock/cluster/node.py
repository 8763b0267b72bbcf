"""A node's worker as a Ray actor: one per node, long-lived, named after the node.

It owns the node's ``Worker`` (its backends and sandboxes) and a relay for the data path, and
answers Ray calls for what Ray is good at here: lifecycle, in batches (``create_many``,
``stop_many``), and the node's report (``info``). It refuses a create that would take the node
past its limits (an admin's view may be a heartbeat old, and several admins place at once), so
the node, not the admin, has the last word on its own resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time

from rock.worker.resources import NodeInfo, NodeLoad, Resources
from rock.cluster.placement import fits
from rock.cluster.relay import RelayServer
from rock.config import Settings
from rock.errors import RockError
from rock.runtime import BACKENDS, get_runtime_class
from rock.runtime.base import SandboxSpec
from rock.runtime.egress.broker import HeldSecrets, secret_names

log = logging.getLogger("rock.cluster.node")
NAMESPACE = "rock"
ACTOR_PREFIX = "rock-worker:"
# Sandboxes started at once on a node: a start does synchronous work on the worker's event loop
# (spawns, mounts), and hundreds at once starved the relay and the heartbeat on that same loop.
CREATE_CONCURRENCY = 16


class NodeFull(RockError):
    """This node has no room for the sandbox (the admin tries another). HTTP 503."""

    status_code = 503


def _error(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": getattr(exc, "message", None) or str(exc) or type(exc).__name__}


class NodeWorker:
    """The actor's class (wrapped by ``ray.remote`` in ``start_node``, so importing this needs no Ray)."""

    def __init__(self, settings: dict, name: str):
        self.settings = Settings(**settings)
        self.name = name
        self.worker = None
        self.relay: RelayServer | None = None
        self.capacity = Resources()
        self.labels: dict[str, str] = dict(self.settings.node_labels)
        self.version = 0
        self._claims: dict[str, Resources] = {}  # sandboxes being created: already counted
        self._starts = asyncio.Semaphore(CREATE_CONCURRENCY)
        self.secrets = HeldSecrets()  # the values its relay sends, given by the admin; memory only
        self._starting: dict[str, set[tuple[str, str]]] = {}  # sandboxes being started: the secrets they use

    async def start(self) -> dict:
        """Start the node's worker and its relay; the node's ``info``."""
        import ray

        from rock.worker.worker import Worker

        self.worker = Worker(self.settings)
        # The node's relay asks the values it was given, never a vault: the admin's stays with it.
        self.worker.egress.gate.broker.lookup = self.secrets.lookup
        await self.worker.start()
        ctx = ray.get_runtime_context()
        node_id = ctx.get_node_id()
        me = next((n for n in ray.nodes() if n["NodeID"] == node_id), {})
        res = me.get("Resources", {})
        for key in res:  # Ray's own accelerator label, e.g. accelerator_type:A100
            if key.startswith("accelerator_type:"):
                self.labels.setdefault("accelerator_type", key.split(":", 1)[1])
        self.labels.update(me.get("Labels") or {})
        self.labels = {k: v for k, v in self.labels.items() if not k.startswith("ray.io/")}
        disk = shutil.disk_usage(self.settings.state_dir)
        self.capacity = Resources(cpus=float(res.get("CPU", os.cpu_count() or 1)),
                                  memory_bytes=int(res.get("memory", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))),
                                  gpus=self.worker.gpus.total, disk_bytes=disk.free)
        self.ip = me.get("NodeManagerAddress") or ray.util.get_node_ip_address()
        self.ray_node_id = node_id
        self.relay = RelayServer(self._socket_path, self._load)
        port = await self.relay.start(self.settings.relay_host or self.ip, self.settings.relay_port)
        self.relay_address = f"{self.settings.relay_host or self.ip}:{port}"
        self.backends = [b for b in BACKENDS if get_runtime_class(b).available() is None]
        self.images = await asyncio.to_thread(_images)
        log.info("node %s ready: %s, relay %s, %d sandbox(es) re-attached", self.name, self.capacity.describe(),
                 self.relay_address, len(self.worker.list()))
        return self.info()

    def _socket_path(self, sandbox_id: str) -> str:
        return self.worker.handle(sandbox_id).socket_path

    # -- reports ----------------------------------------------------------------------------

    def _held(self) -> dict[str, Resources]:
        """What each sandbox holds, by id: running ones and those being created (one entry each, even
        while a create's claim and its running sandbox overlap)."""
        held = {spec.sandbox_id: _resources(spec) for spec in self.worker.specs()}
        for sid, claim in self._claims.items():
            held.setdefault(sid, claim)
        return held

    def _reserved(self) -> Resources:
        total = Resources()
        for need in self._held().values():
            total = total + need
        return total

    def _load(self) -> dict:
        held = self._held()
        total = Resources()
        for need in held.values():
            total = total + need
        return NodeLoad(reserved=total, sandboxes=len(self.worker.specs()), version=self.version,
                        loadavg=os.getloadavg()[0], ids=list(held)).model_dump()

    def info(self) -> dict:
        """The node as the admin tracks it: identity, relay, capacity, labels, backends, images, warm
        pools, load and sandboxes."""
        pools = sorted({image or self.settings.default_image for image in self.worker.pool.images()})
        return NodeInfo(
            name=self.name, ray_node_id=self.ray_node_id, host_name=socket.gethostname(), ip=self.ip,
            relay=self.relay_address, token=self.relay.token, capacity=self.capacity, labels=self.labels,
            backend=self.worker.backend_name, backends=self.backends, images=self.images, pools=pools,
            capabilities=sorted(self.worker.runtime.capabilities()),
            load=NodeLoad(**self._load()), sandbox_ids=[i.sandbox_id for i in self.worker.list()],
            stopped_ids=self.worker.stopped_ids(), secrets_wanted=sorted(self._secrets_used() - self.secrets.held()),
        ).model_dump()

    # -- egress: the gate is this node's (its worker's), the secret values the admin's -----------------

    def _secrets_used(self) -> set[tuple[str, str]]:
        used: set[tuple[str, str]] = set().union(*self._starting.values())
        for spec in self.worker.specs():
            used |= secret_names(spec.brokered)
        return used

    async def put_secrets(self, items: list[dict]) -> None:
        """Values of the admin's secrets for this node's relay (a value of None forgets one)."""
        self.secrets.put(items)

    async def held_secrets(self) -> list[tuple[str, str]]:
        """Which secrets' values this node holds (namespace, name), never the values."""
        return sorted(self.secrets.held())

    async def update_egress(self, sandbox_id: str, rules: dict) -> dict:
        """A running sandbox's new egress policy, applied by this node's gate."""
        return await self._one(self.worker.update_egress, sandbox_id, rules)

    # -- lifecycle, in batches ------------------------------------------------------------------

    async def create_many(self, specs: list[dict], secrets: list[dict] | None = None) -> dict:
        """Start each sandbox: ``results`` per spec ``{"ok": SandboxInfo}`` or ``{"error": {type,
        message}}``, and ``load``, the node's report once they are all answered (the admin's count
        is then exact at once, with no heartbeat to wait for). ``secrets``: the values their
        relays send (``put_secrets``), given in the same call so they are here before they run."""
        parsed = [SandboxSpec(**s) for s in specs]
        with self._secrets_for(parsed, secrets):
            results = list(await asyncio.gather(*(self._create(spec) for spec in parsed)))
        return {"results": results, "load": self._load()}

    @contextlib.contextmanager
    def _secrets_for(self, specs: list[SandboxSpec], secrets: list[dict] | None):
        """Hold ``secrets`` for sandboxes being started: a stop meanwhile keeps what they use."""
        self.secrets.put(secrets or [])
        for spec in specs:
            self._starting[spec.sandbox_id] = secret_names(spec.brokered)
        try:
            yield
        finally:
            for spec in specs:
                self._starting.pop(spec.sandbox_id, None)

    async def _create(self, spec: SandboxSpec) -> dict:
        sid = spec.sandbox_id
        need = _resources(spec)
        try:
            limit = Resources(cpus=self.capacity.cpus * self.settings.overcommit,
                              memory_bytes=int(self.capacity.memory_bytes * self.settings.overcommit),
                              gpus=self.capacity.gpus, disk_bytes=self.capacity.disk_bytes)
            known = sid in self._claims or self.worker.has(sid)
            if not known and not fits(need, limit - self._reserved()):
                raise NodeFull(f"node {self.name} has no room for {need.describe()} "
                               f"(holds {self._reserved().describe()} of {limit.describe()})")
            self._claims[sid] = need
            self.version += 1
            try:
                async with self._starts:
                    info = await self.worker.create(spec)
            finally:
                self._claims.pop(sid, None)
            self.version += 1
            return {"ok": info.model_dump() | {"node_id": self.name, "host_ip": self.ip}}
        except Exception as exc:  # noqa: BLE001 - each sandbox's failure travels on its own
            return {"error": _error(exc)}

    async def stop_many(self, sandbox_ids: list) -> dict:
        """Each item a sandbox id, or ``{"sandbox_id", "keep"}`` (keep: its files stay for a restart):
        ``results`` per item None or an error, and ``load``, the node's report after the stops."""
        async def one(item) -> dict | None:
            sid, keep = (item, False) if isinstance(item, str) else (item["sandbox_id"], bool(item.get("keep")))
            try:
                await self.worker.stop(sid, keep=keep)
                return None
            except Exception as exc:  # noqa: BLE001
                return _error(exc)
            finally:
                self.version += 1

        results = list(await asyncio.gather(*(one(s) for s in sandbox_ids)))
        self.secrets.keep(self._secrets_used())  # a value no sandbox here uses is not held
        return {"results": results, "load": self._load()}

    async def _one(self, what, *args) -> dict:
        try:
            return {"ok": await what(*args)}
        except Exception as exc:  # noqa: BLE001 - the error travels to the admin by name
            return {"error": _error(exc)}
        finally:
            self.version += 1

    async def restart(self, sandbox_id: str) -> dict:
        """Restart a stopped sandbox of this node; its info with the node's name and address."""
        async def go():
            info = await self.worker.restart(sandbox_id)
            return info.model_dump() | {"node_id": self.name, "host_ip": self.ip}
        return await self._one(go)

    async def restore(self, sandbox_id: str, name: str, owner: str | None) -> dict:
        """Roll a sandbox of this node back to snapshot ``name`` in place."""
        async def go():
            info = await self.worker.restore(sandbox_id, name, owner)
            return info.model_dump() | {"node_id": self.name, "host_ip": self.ip}
        return await self._one(go)

    async def commit(self, sandbox_id: str, image_tag: str) -> dict:
        """Commit a sandbox of this node to the image ``image_tag``."""
        return await self._one(self.worker.commit, sandbox_id, image_tag)

    async def disk_usage(self, sandbox_id: str) -> dict:
        """A sandbox's disk use on this node."""
        return await self._one(self.worker.disk_usage, sandbox_id)

    # -- pause, snapshots (the admin's ClusterWorker forks with these) ---------------------------

    async def pause(self, sandbox_id: str) -> dict:
        """Pause a sandbox of this node."""
        return await self._one(self.worker.pause, sandbox_id)

    async def unpause(self, sandbox_id: str) -> dict:
        """Resume a sandbox of this node."""
        return await self._one(self.worker.unpause, sandbox_id)

    async def snapshot(self, sandbox_id: str, name: str, owner: str | None, mode: str, early: bool = False) -> dict:
        """Take a snapshot of a sandbox of this node (``early``: answer once it is whole, see ``back``)."""
        async def go():
            return (await self.worker.snapshot(sandbox_id, name, owner, mode, early=early)).model_dump(mode="json")
        return await self._one(go)

    async def back(self, sandbox_id: str) -> dict:
        """Wait until a sandbox of this node is back from an early snapshot."""
        return await self._one(self.worker.back, sandbox_id)

    async def start_from(self, name: str, owner: str | None, spec: dict, secrets: list[dict] | None = None) -> dict:
        """Start a sandbox from a snapshot this node holds (``secrets``: as ``create_many``'s)."""
        parsed = SandboxSpec(**spec)

        async def go():
            info = await self.worker.start_from(name, owner, parsed)
            return info.model_dump() | {"node_id": self.name, "host_ip": self.ip}
        with self._secrets_for([parsed], secrets):
            return await self._one(go)

    async def get_snapshot(self, name: str, owner: str | None) -> dict:
        """The owner's snapshot ``name`` on this node."""
        async def go():
            return (await self.worker.get_snapshot(name, owner)).model_dump(mode="json")
        return await self._one(go)

    async def snapshots(self, owner: str | None) -> list[dict]:
        """The owner's snapshots on this node."""
        return [s.model_dump(mode="json") for s in await self.worker.snapshots(owner)]

    async def delete_snapshot(self, name: str, owner: str | None) -> dict:
        """Delete the owner's snapshot ``name`` on this node."""
        return await self._one(self.worker.delete_snapshot, name, owner)

    async def stats(self, sandbox_id: str) -> dict:
        """A sandbox's resource use on this node."""
        return (await self.worker.stats(sandbox_id)).model_dump()

    async def shutdown(self, stop_sandboxes: bool = False) -> None:
        """Close the relay and the worker; the sandboxes run on unless ``stop_sandboxes``."""
        if self.relay is not None:
            await self.relay.close()
        if self.worker is not None:
            await self.worker.close(stop_sandboxes=stop_sandboxes)


def _resources(spec: SandboxSpec) -> Resources:
    return Resources(cpus=spec.cpus or 0.0, memory_bytes=spec.memory_bytes or 0, gpus=len(spec.gpu_ids) or spec.gpus,
                     disk_bytes=spec.disk_bytes or 0)


def _images() -> list[str]:
    try:
        import docker

        api = docker.from_env(timeout=5)
        try:
            return sorted({tag for image in api.images.list() for tag in image.tags})
        finally:
            api.close()
    except Exception:  # noqa: BLE001 - no engine: no images to prefer
        return []


def start_node(settings: Settings, name: str | None = None, node_id: str | None = None, timeout: float = 120) -> dict:
    """Start (or find) the worker actor of a Ray node; returns its report. Needs ``ray.init`` done.

    ``node_id`` defaults to the node this process is connected to. The actor is detached (it
    outlives this call) and pinned to its node; a name still held by a dead node's actor is
    waited for, since Ray frees it once it notices that node is gone.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = node_id or ray.get_runtime_context().get_node_id()
    name = name or socket.gethostname()
    cls = ray.remote(NodeWorker)
    deadline = time.monotonic() + timeout
    while True:
        try:
            actor = cls.options(
                name=ACTOR_PREFIX + name, namespace=NAMESPACE, lifetime="detached", num_cpus=0, max_concurrency=10000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                # Sandboxes outlive their worker (a restarted worker re-attaches them): Ray must not
                # kill the worker process's children when it exits.
                runtime_env={"env_vars": {"RAY_kill_child_processes_on_worker_exit": "false"}},
            ).remote(settings.model_dump(mode="json"), name)
            break
        except ValueError as exc:  # the name is taken
            try:
                existing = ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE)
                return ray.get(existing.info.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - a dead node's actor still holds the name
                if time.monotonic() > deadline:
                    raise RockError(f"worker name {name!r} stays taken: {exc}") from None
                time.sleep(0.5)
    return ray.get(actor.start.remote(), timeout=timeout)
