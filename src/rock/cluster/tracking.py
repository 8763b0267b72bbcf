"""How a cluster admin knows its nodes: Ray's named worker actors found every second and attached
(their report and a heartbeat connection to their relay), a heartbeat twice a second, and a node
marked lost on a reset connection or three late beats in a row.

``NodeTracker`` is an object the ``ClusterWorker`` holds. It owns the node table (``NodeView`` by
name), each node's worker actor, its heartbeat connection and the inventory version it last
reported; nothing else writes them. What a node's arrival or loss means for sandboxes (where each
one runs, its open connections, the calls in flight, the listeners) is the worker's, told through
``NodeEvents``. Where a node is found and reached is one seam, ``NodeSource``: Ray's actors
(``RayNodes``) in production, stand-ins in ``simulated.py`` for the scale benchmark.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from rock.worker.resources import NodeInfo, NodeLoad
from rock.cluster.node import ACTOR_PREFIX, NAMESPACE
from rock.cluster.placement import NodeView
from rock.cluster.relay import open_control
from rock.errors import AgentGone, RockError
from rock.worker.agent_client import AgentClient

log = logging.getLogger("rock.cluster")

HEARTBEAT_S = 0.5
HEARTBEAT_TIMEOUT_S = 2.0
# A reset connection is a dead worker at once; silence is only loss after this many beats in a
# row (a node busy starting hundreds of sandboxes answers late, and is placed nothing meanwhile).
HEARTBEAT_MISSES = 3
DISCOVER_S = 1.0
RAY_CALL_TIMEOUT_S = 10.0


class NodeLost(RockError):
    """The sandbox's node was lost (its worker stopped answering). HTTP 503."""

    status_code = 503


class NodeSource(Protocol):
    """Where nodes are found and reached."""

    def start(self) -> None:
        """Join whatever finds the nodes (Ray's cluster), before the first ``names``."""

    async def names(self) -> list[str]:
        """The nodes whose worker is up now."""

    async def reach(self, name: str) -> tuple[object, NodeInfo, AgentClient]:
        """A node's worker actor, its report, and a heartbeat connection to its relay."""


class RayNodes:
    """Nodes as Ray's named worker actors (``rock.cluster.node``), in the Ray cluster at ``address``
    (``None``, ``""`` or ``"local"``: start one in this process)."""

    def __init__(self, address: str | None):
        self.address = address

    def start(self) -> None:
        """Join the Ray cluster (or start a local one), keeping the server's signal handlers."""
        import ray

        if not ray.is_initialized():
            # ray.init replaces the SIGTERM handler with sys.exit: keep the server's graceful shutdown.
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
            ray.init(address=None if self.address in (None, "", "local") else self.address, namespace=NAMESPACE,
                     logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)

    async def names(self) -> list[str]:
        """The names of the nodes whose worker actors are registered."""
        import ray

        names = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        return [a["name"][len(ACTOR_PREFIX):] for a in names
                if a.get("namespace") == NAMESPACE and a["name"].startswith(ACTOR_PREFIX)]

    async def reach(self, name: str) -> tuple[object, NodeInfo, AgentClient]:
        """A node's actor, its info and a control connection to its relay."""
        import ray

        actor = await asyncio.to_thread(ray.get_actor, ACTOR_PREFIX + name, NAMESPACE)
        info = NodeInfo(**await asyncio.wait_for(actor.info.remote(), HEARTBEAT_TIMEOUT_S))
        control, _ = await open_control(info.relay, info.token, HEARTBEAT_TIMEOUT_S)
        return actor, info, control


@dataclass
class NodeEvents:
    """What the tracker tells its owner, in this order for one node: ``inventory`` (attach and
    every refresh), then ``back`` (a lost node attached again), then ``room``; ``lost`` after the
    node is marked lost and its heartbeat connection closed."""

    inventory: Callable[[str, list[str]], None]  # these sandboxes run on that node
    back: Callable[[str, list[str]], Awaitable[None]]  # a lost node is attached again, with these sandboxes
    lost: Callable[[str, str], None]  # (name, reason): fail what runs or waits there
    room: Callable[[], None]  # room may have appeared: after an attach and each heartbeat round


class NodeTracker:
    """The node table, each node's actor, heartbeat connection and inventory version; discovery,
    attach, heartbeat and loss. Read by the worker through ``get``, ``all``, ``live`` and ``actor``."""

    def __init__(self, source: NodeSource, events: NodeEvents):
        self.source, self.events = source, events
        self.nodes: dict[str, NodeView] = {}
        self._actors: dict[str, object] = {}
        self._control: dict[str, AgentClient] = {}
        self._versions: dict[str, int] = {}
        self._attaching: dict[str, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []

    # -- what the worker reads ----------------------------------------------------------------------

    def get(self, name: str | None) -> NodeView | None:
        """The node named ``name`` (None for an unknown name or none)."""
        return self.nodes.get(name) if name else None

    def all(self) -> list[NodeView]:
        """Every known node, lost ones included."""
        return list(self.nodes.values())

    def live(self) -> list[NodeView]:
        """The nodes not lost."""
        return [n for n in self.nodes.values() if n.live]

    def actor(self, name: str):
        """The node's worker actor (a Ray handle): lifecycle calls go there, the data path does not."""
        return self._actors[name]

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the source, attach the nodes up now, then discover and beat in the background."""
        self.source.start()
        await self.discover()
        self._tasks = [asyncio.create_task(self._heartbeat_loop(), name="rock-cluster-heartbeat"),
                       asyncio.create_task(self._discover_loop(), name="rock-cluster-discover")]

    async def close(self) -> None:
        """Stop watching the nodes and close their control connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for control in self._control.values():
            control.close()

    # -- discovery and attach -----------------------------------------------------------------------

    async def discover(self) -> None:
        """Attach to the nodes that registered since, and to lost ones that came back."""
        found = await self.source.names()
        await asyncio.gather(*(self._attach_once(name) for name in found
                               if name not in self.nodes or not self.nodes[name].live), return_exceptions=True)

    async def reattach(self, name: str | None) -> NodeView | None:
        """Node ``name`` if it is live, after one try to attach it now where it is lost or unknown
        here; None when it is still not reachable. For a caller that knows better than this process's
        last discovery round: a sandbox record another process wrote says the node is back."""
        if not name:
            return None
        node = self.nodes.get(name)
        if node is None or not node.live:
            await self._attach_once(name)
            node = self.nodes.get(name)
        return node if node is not None and node.live else None

    async def _attach_once(self, name: str) -> None:
        """``_attach``, shared by whoever asks while one runs (discovery and ``reattach`` at once
        would open two heartbeat connections and tell the node's return twice)."""
        task = self._attaching.get(name)
        if task is None:
            task = self._attaching[name] = asyncio.ensure_future(self._attach(name))
            task.add_done_callback(lambda _: self._attaching.pop(name, None))
        await asyncio.shield(task)

    async def _attach(self, name: str) -> None:
        try:
            actor, info, control = await self.source.reach(name)
        except Exception as exc:  # noqa: BLE001 - not (yet) reachable: the next round tries again
            log.debug("node %s not attached: %s", name, exc)
            return
        old = self.nodes.get(name)
        self._actors[name], self._control[name] = actor, control
        self._versions[name] = info.load.version
        if old is None:
            self.nodes[name] = NodeView(info)
        else:
            old.restarted()
            old.update(info)
            old.lost_at, old.lost_reason = None, ""
        self.events.inventory(name, info.sandbox_ids)
        if old is not None:
            log.warning("node %s is back (%d sandbox(es) still running there)", name, len(info.sandbox_ids))
            await self.events.back(name, list(info.sandbox_ids))
        else:
            log.info("node %s joined: %s, labels %s", name, info.capacity.describe(), info.labels)
        self.events.room()

    async def _discover_loop(self) -> None:
        while True:
            await asyncio.sleep(DISCOVER_S)
            try:
                await self.discover()
            except Exception as exc:  # noqa: BLE001 - Ray's control store may be briefly away
                log.warning("cluster discovery failed: %s", exc)

    # -- heartbeat and loss -------------------------------------------------------------------------

    def mark_lost(self, name: str, reason: str) -> None:
        """Mark node ``name`` lost with ``reason`` (once) and drop its control connection."""
        node = self.nodes.get(name)
        if node is None or not node.live:
            return
        node.lost_at, node.lost_reason = time.time(), reason
        log.error("node %s lost: %s", name, reason)
        control = self._control.pop(name, None)
        if control is not None:
            control.close()
        self.events.lost(name, reason)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await asyncio.gather(*(self._beat(name) for name, n in list(self.nodes.items()) if n.live))
            self.events.room()

    async def _beat(self, name: str) -> None:
        control = self._control.get(name)
        try:
            if control is None:
                raise AgentGone("no heartbeat connection")
            result, _ = await asyncio.wait_for(control.call("relay.ping"), HEARTBEAT_TIMEOUT_S)
        except asyncio.TimeoutError:
            node = self.nodes[name]
            node.misses += 1
            if node.misses >= HEARTBEAT_MISSES:
                self.mark_lost(name, f"no heartbeat for {HEARTBEAT_MISSES * HEARTBEAT_TIMEOUT_S:g}s")
            return
        except AgentGone as exc:
            self.mark_lost(name, f"its worker is unreachable ({exc.message})")
            return
        load = NodeLoad(**result)
        node = self.nodes[name]
        node.misses = 0
        node.apply(load)
        if load.version != self._versions.get(name):
            self._versions[name] = load.version
            asyncio.ensure_future(self._refresh(name))

    async def _refresh(self, name: str) -> None:
        """Re-read a node's inventory (its set of sandboxes changed)."""
        try:
            info = NodeInfo(**await asyncio.wait_for(self._actors[name].info.remote(), RAY_CALL_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - the heartbeat decides about loss
            return
        self.nodes[name].update(info)
        self.events.inventory(name, info.sandbox_ids)
