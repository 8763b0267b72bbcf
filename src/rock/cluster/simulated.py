"""SIMULATED cluster nodes, for the scale benchmark only (bench/scale_sim.py): the real admin,
store and placement against stand-ins for the nodes' workers. Never for serving sandboxes.

Selected by the ``simulated_cluster`` setting (``ROCK_SIMULATED_CLUSTER='{"nodes": 50, ...}'``);
nothing else reaches this module. ``SimulatedCluster`` is ``ClusterWorker`` with one seam
replaced: where the admin finds and reaches a node (its ``NodeSource``: a Ray actor handle and a
heartbeat connection to the node's relay) it gets a ``SimulatedNode`` in this process instead. Everything
above that seam -- admission, placement, batching per node, heartbeats, inventory refreshes,
node loss -- is the production code path.

A simulated node answers ``create_many``/``stop_many`` after a configured delay (what a real
node's start or stop would take), keeps only the bookkeeping a real node reports (which sandbox
holds what), refuses what does not fit (as ``NodeWorker`` does) and starts nothing: no process,
no files, no data path (``connect`` fails with a message saying so).
"""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import BaseModel, ConfigDict, Field

from rock.cluster.client import ClusterWorker
from rock.worker.resources import GIB, NodeInfo, NodeLoad, Resources
from rock.cluster.node import NodeFull, _error
from rock.cluster.placement import fits
from rock.errors import AgentGone
from rock.runtime.base import ResourceStats

log = logging.getLogger("rock.cluster")

BACKEND = "simulated"


class SimulatedSpec(BaseModel):
    """What ``simulated_cluster`` may say."""

    model_config = ConfigDict(extra="forbid")
    nodes: int = Field(default=50, ge=1, le=10_000)
    create_delay_ms: float = Field(default=0.0, ge=0)
    stop_delay_ms: float = Field(default=0.0, ge=0)
    cpus: float = Field(default=64.0, gt=0)  # per node
    memory_gib: float = Field(default=256.0, gt=0)


class _Method:
    """``handle.method.remote(*args)`` as on a Ray actor handle: an awaitable."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class SimulatedNode:
    """A stand-in for one node's worker actor and its relay's heartbeat connection."""

    def __init__(self, name: str, spec: SimulatedSpec):
        self.name, self.spec = name, spec
        self.capacity = Resources(cpus=spec.cpus, memory_bytes=int(spec.memory_gib * GIB), disk_bytes=1 << 50)
        self.held: dict[str, Resources] = {}  # sandbox id -> what it holds (claimed at the call, as NodeWorker)
        self.reserved = Resources()
        self.version = 0
        self.closed = False  # as AgentClient.closed (the heartbeat connection)
        for method in ("create_many", "stop_many", "info", "stats", "restart", "commit", "disk_usage", "snapshots"):
            setattr(self, method, _Method(getattr(self, "_" + method)))

    # -- the heartbeat connection (AgentClient's surface that ClusterWorker uses) ----------------

    async def call(self, method: str, *args, **kwargs):
        return self._load(), None

    def close(self) -> None:
        self.closed = True

    # -- the actor --------------------------------------------------------------------------------

    def _load(self) -> dict:
        return {"reserved": self.reserved.model_dump(), "sandboxes": len(self.held), "version": self.version,
                "loadavg": 0.0, "ids": list(self.held)}

    async def _info(self) -> dict:
        return NodeInfo(name=self.name, ray_node_id=f"simulated-{self.name}", host_name=f"simulated-{self.name}",
                        ip="127.0.0.1", relay="simulated:0", token="", capacity=self.capacity,
                        labels={"simulated": "true", "node": self.name}, backend=BACKEND, backends=[BACKEND],
                        load=NodeLoad(**self._load()), sandbox_ids=list(self.held)).model_dump()

    async def _create_many(self, specs: list[dict]) -> dict:
        # The specs as they came (JSON-ready dicts) are read, not parsed into models again: what
        # this stand-in costs runs in the admin's process and would count as the admin's CPU.
        claimed: list[tuple[dict, dict | None]] = []
        limit = Resources(cpus=self.capacity.cpus, memory_bytes=self.capacity.memory_bytes, disk_bytes=self.capacity.disk_bytes)
        for raw in specs:
            sid = raw["sandbox_id"]
            need = Resources.model_construct(cpus=raw.get("cpus") or 0.0, memory_bytes=raw.get("memory_bytes") or 0,
                                             gpus=len(raw.get("gpu_ids") or ()) or raw.get("gpus") or 0,
                                             disk_bytes=raw.get("disk_bytes") or 0)
            if sid not in self.held and not fits(need, limit - self.reserved):
                claimed.append((raw, {"error": _error(NodeFull(f"node {self.name} has no room for {need.describe()}"))}))
                continue
            if sid not in self.held:
                self.held[sid] = need
                self.reserved = self.reserved + need
            claimed.append((raw, None))
        self.version += 1
        if self.spec.create_delay_ms:
            await asyncio.sleep(self.spec.create_delay_ms / 1e3)
        now = time.time()
        return {"load": self._load(), "results": [failed or {"ok": {"sandbox_id": raw["sandbox_id"], "backend": BACKEND, "state": "running",
                                  "spec": raw, "created_at": now, "host_name": f"simulated-{self.name}",
                                  "host_ip": "127.0.0.1", "runtime_id": raw["sandbox_id"], "node_id": self.name}}
                for raw, failed in claimed]}

    async def _stop_many(self, items: list) -> dict:
        if self.spec.stop_delay_ms:
            await asyncio.sleep(self.spec.stop_delay_ms / 1e3)
        for item in items:
            sid = item if isinstance(item, str) else item["sandbox_id"]
            need = self.held.pop(sid, None)
            if need is not None:
                self.reserved = self.reserved - need
        self.version += 1
        return {"results": [None for _ in items], "load": self._load()}

    async def _stats(self, sandbox_id: str) -> dict:
        return ResourceStats().model_dump()

    async def _restart(self, sandbox_id: str) -> dict:
        return {"error": {"type": "BadRequest", "message": "a simulated node keeps no files to restart from"}}

    async def _commit(self, sandbox_id: str, image_tag: str) -> dict:
        return {"error": {"type": "BadRequest", "message": "a simulated node has no image engine"}}

    async def _disk_usage(self, sandbox_id: str) -> dict:
        return {"ok": None}

    async def _snapshots(self, owner: str | None) -> list[dict]:
        return []  # it takes none


class SimulatedNodes:
    """The ``NodeSource`` of a simulated cluster: every stand-in is up from the start (no Ray)."""

    def __init__(self, spec: SimulatedSpec):
        self.nodes = {f"sim-{i:03d}": SimulatedNode(f"sim-{i:03d}", spec) for i in range(spec.nodes)}

    def start(self) -> None:
        pass

    async def names(self) -> list[str]:
        return list(self.nodes)

    async def reach(self, name: str):
        node = self.nodes[name]
        node.closed = False
        return node, NodeInfo(**await node._info()), node


class SimulatedCluster(ClusterWorker):
    """``ClusterWorker`` whose nodes are ``SimulatedNode`` objects in this process (no Ray)."""

    def __init__(self, settings):
        self.sim = SimulatedSpec(**settings.simulated_cluster)
        source = SimulatedNodes(self.sim)
        super().__init__(settings, source)
        self.sim_nodes = source.nodes
        log.warning("SIMULATED cluster: %d stand-in nodes (create %g ms, stop %g ms); nothing really starts",
                    self.sim.nodes, self.sim.create_delay_ms, self.sim.stop_delay_ms)

    async def connect(self, sandbox_id: str, node_id: str | None = None):
        raise AgentGone(f"sandbox {sandbox_id} is on a simulated node: it has no data path")
