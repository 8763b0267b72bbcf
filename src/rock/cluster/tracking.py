"""How a cluster admin knows its nodes: Ray's named worker actors found every second and attached
(their report and a heartbeat connection to their relay), a heartbeat twice a second, and a node
marked lost on a reset connection or three late beats in a row; the listeners (the sandbox
records) are told when a node goes and when it comes back. A mixin of ``ClusterWorker``, which
holds the state (``nodes``, ``where``, the connections, what is in flight)."""

from __future__ import annotations

import asyncio
import logging
import time

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
    status_code = 503


class NodeTracking:
    """Node discovery, attach, heartbeat and loss for ``ClusterWorker`` (its state, its listeners)."""

    async def _node_names(self) -> list[str]:
        """The nodes whose worker actor is up (Ray's named actors)."""
        import ray

        names = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        return [a["name"][len(ACTOR_PREFIX):] for a in names
                if a.get("namespace") == NAMESPACE and a["name"].startswith(ACTOR_PREFIX)]

    async def _discover(self) -> None:
        found = await self._node_names()
        await asyncio.gather(*(self._attach(name) for name in found
                               if name not in self.nodes or not self.nodes[name].live), return_exceptions=True)

    async def _reach(self, name: str) -> tuple[object, NodeInfo, AgentClient]:
        """A node's worker actor, its report, and a heartbeat connection to its relay."""
        import ray

        actor = await asyncio.to_thread(ray.get_actor, ACTOR_PREFIX + name, NAMESPACE)
        info = NodeInfo(**await asyncio.wait_for(actor.info.remote(), HEARTBEAT_TIMEOUT_S))
        control, _ = await open_control(info.relay, info.token, HEARTBEAT_TIMEOUT_S)
        return actor, info, control

    async def _attach(self, name: str) -> None:
        try:
            actor, info, control = await self._reach(name)
        except Exception as exc:  # noqa: BLE001 - not (yet) reachable: the next round tries again
            log.debug("node %s not attached: %s", name, exc)
            return
        old = self.nodes.get(name)
        self._actors[name], self._control[name] = actor, control
        self._versions[name] = info.load.version
        if old is None:
            self.nodes[name] = NodeView(info)
        else:
            old.update(info)
            old.lost_at, old.lost_reason, old.pending = None, "", old.pending - old.pending
        for sid in info.sandbox_ids:
            self.where[sid] = name
        if old is not None:
            log.warning("node %s is back (%d sandbox(es) still running there)", name, len(info.sandbox_ids))
            for listener in self.listeners:  # only those that track nodes (the chat hub does not)
                if hasattr(listener, "node_back"):
                    await listener.node_back(name, list(info.sandbox_ids))
        else:
            log.info("node %s joined: %s, labels %s", name, info.capacity.describe(), info.labels)
        self._pump()

    def _mark_lost(self, name: str, reason: str) -> None:
        node = self.nodes.get(name)
        if node is None or not node.live:
            return
        node.lost_at, node.lost_reason = time.time(), reason
        log.error("node %s lost: %s", name, reason)
        control = self._control.pop(name, None)
        if control is not None:
            control.close()
        for sid, where in list(self.where.items()):
            if where == name and (client := self._clients.pop(sid, None)) is not None:
                client.close()
        for future in self._inflight.pop(name, set()):
            if not future.done():
                future.set_exception(NodeLost(f"node {name} was lost: {reason}"))
        for listener in self.listeners:
            if hasattr(listener, "node_lost"):
                asyncio.ensure_future(listener.node_lost(name, reason))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await asyncio.gather(*(self._beat(name) for name, n in list(self.nodes.items()) if n.live))
            if self._waiting:
                self._pump()

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
                self._mark_lost(name, f"no heartbeat for {HEARTBEAT_MISSES * HEARTBEAT_TIMEOUT_S:g}s")
            return
        except AgentGone as exc:
            self._mark_lost(name, f"its worker is unreachable ({exc.message})")
            return
        load = NodeLoad(**result)
        node = self.nodes[name]
        node.misses = 0
        node.reserved = load.reserved
        node.info.load = load
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
        for sid in info.sandbox_ids:
            self.where[sid] = name

    async def _discover_loop(self) -> None:
        while True:
            await asyncio.sleep(DISCOVER_S)
            try:
                await self._discover()
            except Exception as exc:  # noqa: BLE001 - Ray's control store may be briefly away
                log.warning("cluster discovery failed: %s", exc)

    def live_nodes(self) -> list[NodeView]:
        return [n for n in self.nodes.values() if n.live]
