"""The admin's side of a cluster: the same interface as the embedded ``Worker`` (create, stop,
connect, stats, list), backed by the nodes' worker actors.

- Placement: each create is decided here (``placement.py``) against every node's last report
  plus what this admin has in flight, then sent with whatever else was decided for that node
  within the same millisecond as one Ray call (``create_many``). A node that is full after all
  (another admin got there first) says so and the sandbox is placed again.
- Admission: a request no node could ever hold is refused before anything is recorded (400); one
  that no live node has room for now is refused at once (503 ``CapacityExceeded``, naming the
  resource no node has left and what each has free). The count is exact, not a heartbeat old:
  each node's report names the sandboxes it counts and carries the node's version, every batch of
  creates or stops answers with the node's report after it, and this admin counts its own
  placements only until a report holds them (``NodeView.mine``). A caller that wants to wait
  retries; no request is held until its startup timeout.
- Data path: ``connect`` opens (once per sandbox) a TCP connection to the node's relay; every
  command, file and stream then goes there directly, never through Ray.
- Nodes (``tracking.py``, a ``NodeTracker`` this worker holds as ``nodes``): a heartbeat twice a second over a connection to each node's relay;
  a reset, or three late beats in a row, marks the node lost, fails its calls at once and tells
  the listeners (the sandbox records). Ray's actor list is read every second: a node that comes
  back is re-attached. The tracker owns the node table, the actors and the heartbeat connections;
  this worker owns what follows for sandboxes (``where``, the data connections, the calls in
  flight, the listeners) and hears of a node's arrival and loss through ``NodeEvents``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from rock.worker.resources import Need, NodeLoad
from rock.cluster.node import NodeFull
from rock.cluster.placement import NodeView, Placement, matches
from rock.cluster.relay import open_agent
from rock.cluster.tracking import (HEARTBEAT_TIMEOUT_S, RAY_CALL_TIMEOUT_S, NodeEvents, NodeLost,  # noqa: F401 - re-exported
                                   NodeSource, NodeTracker, RayNodes)
from rock.config import Settings
from rock.errors import (ERRORS, AgentGone, BadRequest, CapacityExceeded, RockError, SandboxNotFound, SandboxNotRunning,
                         SnapshotNotFound)
from rock.runtime.base import ResourceStats, SandboxSpec
from rock.runtime.egress.broker import secret_names
from rock.runtime.snapshots import Snapshot
from rock.worker.agent_client import AgentClient
from rock.worker.protocol import WorkerListener
from rock.worker.snapshots import fork_children
from rock.runtime import backends_with
from rock.worker.worker import SandboxInfo, notify_listeners

log = logging.getLogger("rock.cluster")

BATCH_WINDOW_S = 0.001
CREATE_TIMEOUT_S = 300.0  # a restart on a node: the runtime resumes and the agent answers
COMMIT_TIMEOUT_S = 1800.0  # a commit: the engine writes the layer


def _raise(err: dict) -> RockError:
    if err.get("type") == "NodeFull":
        return NodeFull(err.get("message", ""))
    cls = ERRORS.get(err.get("type", ""), RockError)
    return cls(err.get("message", ""))


class _NodePools:
    """The warm pools as the nodes report them (which images have one), where the admin UI and the
    metrics read the embedded worker's ``pool``: the nodes own theirs, the admin counts none."""

    def __init__(self, cluster: "ClusterWorker"):
        self.cluster = cluster

    def size(self) -> int:
        return 0

    def summary(self) -> list[dict]:
        return [{"image": f"{image} (node {node.name})", "cpus": "-", "memory_bytes": None, "network": None,
                 "ready": "-", "size": "-"} for node in self.cluster.nodes.live() for image in node.info.pools]


class ClusterWorker:
    """The admin's worker over a cluster's nodes (``WorkerOps``): placement, batched lifecycle
    calls over Ray, a direct data path to each node's relay."""

    backend_name = "cluster"
    clustered = True

    def __init__(self, settings: Settings, source: NodeSource | None = None):
        """``source``: where nodes are found and reached (Ray's actors unless told otherwise)."""
        self.settings = settings
        self.placement = Placement(settings.placement, settings.overcommit)
        self.nodes = NodeTracker(source or RayNodes(settings.cluster),
                                 NodeEvents(inventory=self._inventory, back=self._node_back, lost=self._node_lost,
                                            room=lambda: None))
        self.where: dict[str, str] = {}  # sandbox id -> node name, as far as this admin knows
        self.snapshot_where: dict[str, str] = {}  # snapshot name -> the node that holds it
        self._returning: set[str] = set()  # sandboxes whose node answered an early snapshot before they were back
        self.listeners: list[WorkerListener] = []  # the admin's records, the chat hub
        self._clients: dict[str, AgentClient] = {}
        self._connecting: dict[str, asyncio.Task] = {}
        self._batches: dict[tuple[str, str], list] = {}
        self._inflight: dict[str, set[asyncio.Future]] = collections.defaultdict(set)
        self.pool = _NodePools(self)
        # The admin's SecretVault (the admin sets it): a value goes to a node only for a sandbox
        # there that uses it, inside the Ray call that starts it (docs/security.md, clusters).
        self.vault = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Find the cluster's nodes and start following them (heartbeats, losses)."""
        self._loop = asyncio.get_running_loop()
        await self.nodes.start()
        log.info("cluster: %d node(s): %s", len(self.nodes.all()), ", ".join(
            f"{n.name} ({n.info.capacity.describe()})" for n in self.nodes.all()) or "none yet")

    async def close(self, stop_sandboxes: bool = False) -> None:
        """Stop following the nodes and close the admin's agent connections; the sandboxes run on."""
        await self.nodes.close()
        for client in self._clients.values():
            client.close()

    # -- what a node's arrival and loss mean for sandboxes (``NodeEvents``) ------------------------

    def _inventory(self, name: str, sandbox_ids: list[str]) -> None:
        for sid in sandbox_ids:
            self.where[sid] = name
        node = self.nodes.get(name)
        wanted = node.info.secrets_wanted if node is not None else []
        if wanted and self.vault is not None:  # its worker started again: its relays' values are given again
            asyncio.ensure_future(self._give(name, [self.vault.for_node(ns, n) for ns, n in wanted]))

    # -- secrets for the nodes' relays ----------------------------------------------------------------

    def _secrets(self, specs: list[dict]) -> list[dict]:
        """The values the relays of sandboxes started with ``specs`` send (none without a vault)."""
        if self.vault is None:
            return []
        names: set[tuple[str, str]] = set()
        for spec in specs:
            names |= secret_names(spec.get("brokered"))
        return [self.vault.for_node(ns, name) for ns, name in sorted(names)]

    async def _give(self, name: str, items: list[dict]) -> None:
        try:
            await asyncio.wait_for(self.nodes.actor(name).put_secrets.remote(items), RAY_CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the node's next report asks again
            log.warning("node %s: its relay's secrets could not be given: %s", name, type(exc).__name__)

    def secret_changed(self, owner: str | None, name: str) -> None:
        """A secret's value changed or it was deleted (the vault tells): the nodes that hold it get
        the new value, or forget it, from their next request on."""
        if self.vault is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._push_change(owner, name)))

    async def _push_change(self, owner: str | None, name: str) -> None:
        item = self.vault.for_node(owner, name)
        key = (item["namespace"], name)

        async def one(node: NodeView) -> None:
            try:
                held = await asyncio.wait_for(self.nodes.actor(node.name).held_secrets.remote(), RAY_CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a node that does not answer gets it when it reports wanting it
                return
            if key in {tuple(k) for k in held}:
                await self._give(node.name, [item])

        await asyncio.gather(*(one(n) for n in self.nodes.live()))

    async def update_egress(self, sandbox_id: str, rules: dict) -> None:
        """A running sandbox's new egress policy, applied by the gate of the node it runs on."""
        info = self._node_of(sandbox_id, None).info
        if "egress" not in info.capabilities:
            raise BadRequest(f"egress policies need a backend with an egress gate ({', '.join(backends_with('egress'))}); "
                             f"sandbox {sandbox_id}'s node runs {info.backend}")
        await self._on_node("update_egress", sandbox_id, None, rules, timeout=RAY_CALL_TIMEOUT_S)

    async def _node_back(self, name: str, sandbox_ids: list[str]) -> None:
        for listener in self.listeners:
            await listener.node_back(name, sandbox_ids)

    def _node_lost(self, name: str, reason: str) -> None:
        for sid, where in list(self.where.items()):
            if where == name and (client := self._clients.pop(sid, None)) is not None:
                client.close()
        for future in self._inflight.pop(name, set()):
            if not future.done():
                future.set_exception(NodeLost(f"node {name} was lost: {reason}"))
        for listener in self.listeners:
            asyncio.ensure_future(listener.node_lost(name, reason))

    # -- admission and placement ----------------------------------------------------------------

    def check(self, spec: SandboxSpec) -> None:
        """BadRequest when no node could ever hold ``spec``; CapacityExceeded when none has room now."""
        need = Need.of(spec)
        self.placement.refuse(need, self.nodes.all())
        if spec.egress is not None and not any("egress" in n.info.capabilities for n in self.nodes.live()):
            raise BadRequest(f"egress policies need a node whose backend has an egress gate "
                             f"({', '.join(backends_with('egress'))}); this cluster's live nodes have "
                             f"{', '.join(sorted({n.info.backend for n in self.nodes.live()})) or 'none'}")
        if self.placement.choose(need, self.nodes.all()) is None:
            raise self._full(need)

    def _candidates(self, need: Need) -> list[NodeView]:
        return [n for n in self.nodes.live() if not n.misses and matches(need.selector, n.info.labels)]

    def _full(self, need: Need) -> CapacityExceeded:
        """The refusal of ``need`` that no live node has room for now: the resource none has left
        (or, where each is left somewhere, the first the roomiest node lacks) and each node's free."""
        over = self.placement.overcommit
        free = sorted(((n, n.free(over)) for n in self._candidates(need)), key=lambda nf: -nf[1].cpus)
        r = need.resources
        lacks = {"cpus": lambda f: r.cpus > f.cpus + 1e-9, "memory": lambda f: r.memory_bytes > f.memory_bytes,
                 "gpus": lambda f: r.gpus > f.gpus, "disk": lambda f: r.disk_bytes > f.disk_bytes}
        short = [name for name, lack in lacks.items() if all(lack(f) for _, f in free)]
        if not short and free:
            short = [name for name, lack in lacks.items() if lack(free[0][1])]
        limit = short[0] if short else "cpus"
        where = f" with {', '.join(f'{k}={v}' for k, v in sorted(need.selector.items()))}" if need.selector else ""
        have = "; ".join(f"{n.name}: {f.describe()}" for n, f in free) or "no live node"
        return CapacityExceeded(f"no node{where} has room now for {r.describe()}: its {limit} (overcommit {over:g}) "
                                f"are promised to running sandboxes (free now: {have}); stop one or try later",
                                limit=f"node_{limit}")

    async def create(self, spec: SandboxSpec, timeout: float | None = None) -> SandboxInfo:
        """Start a sandbox on the node placement picks (``CapacityExceeded`` naming the limit at once
        when none has room); another node is tried when one refuses or is lost."""
        need = Need.of(spec)
        sid = spec.sandbox_id
        self.placement.refuse(need, self.nodes.all())  # as ``check`` (the nodes may have changed since)
        while True:
            node = self.placement.choose(need, self.nodes.all())
            if node is None:
                raise self._full(need)
            node.claim(sid, need.resources)
            try:
                result = await self._call(node.name, "create", spec.model_dump(mode="json"))
            except (NodeFull, NodeLost) as exc:
                node.unclaim(sid)
                if isinstance(exc, NodeFull):  # counted as full until its next report
                    node.reserved = node.limit(self.placement.overcommit)
                log.info("sandbox %s: placing again (%s)", sid, exc.message)
                continue
            except BaseException:
                node.unclaim(sid)
                raise
            # The batch's answer carried the node's report, which holds this sandbox (so ``mine``
            # no longer does): the next start is decided on the node's own count.
            self.where[sid] = node.name
            return SandboxInfo(**result)

    # -- lifecycle calls to nodes, in batches ------------------------------------------------------

    def _call(self, name: str, kind: str, payload) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batch = self._batches.setdefault((name, kind), [])
        batch.append((payload, future))
        self._inflight[name].add(future)
        future.add_done_callback(lambda f: self._inflight[name].discard(f))
        if len(batch) == 1:
            loop.call_later(BATCH_WINDOW_S, lambda: asyncio.ensure_future(self._flush(name, kind)))
        return future

    async def _flush(self, name: str, kind: str) -> None:
        batch = self._batches.pop((name, kind), [])
        if not batch:
            return
        actor = self.nodes.actor(name)
        payloads = [p for p, _ in batch]
        secrets = self._secrets(payloads) if kind == "create" else []
        try:
            if secrets:  # values travel in the call that starts their sandboxes, and nowhere else
                answer = await actor.create_many.remote(payloads, secrets)
            else:
                answer = await (actor.create_many if kind == "create" else actor.stop_many).remote(payloads)
        except Exception as exc:  # noqa: BLE001 - the actor is gone: every call in the batch fails
            for _, future in batch:
                if not future.done():
                    future.set_exception(NodeLost(f"node {name}: {type(exc).__name__}: {exc}"))
            return
        results = answer["results"]
        node = self.nodes.get(name)
        if node is not None and node.live:  # the node's report after the batch: the count is exact now
            node.apply(NodeLoad(**answer["load"]))
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if kind == "create":
                if "error" in result:
                    future.set_exception(_raise(result["error"]))
                else:
                    future.set_result(result["ok"])
            elif result is not None:
                future.set_exception(_raise(result))
            else:
                future.set_result(None)

    def _node_name(self, sandbox_id: str, node_id: str | None) -> str | None:
        """The node ``sandbox_id`` runs on: the one its record names, else where this admin saw it."""
        return node_id or self.where.get(sandbox_id)

    def _node_of(self, sandbox_id: str, node_id: str | None) -> NodeView:
        name = self._node_name(sandbox_id, node_id)
        node = self.nodes.get(name)
        if node is None:
            raise SandboxNotFound(f"sandbox {sandbox_id} is on no node this admin knows"
                                  + (f" (node {name} has not joined)" if name else ""))
        if not node.live:
            raise SandboxNotRunning(f"sandbox {sandbox_id} is on node {node.name}, which was lost "
                                    f"{time.time() - node.lost_at:.1f}s ago: {node.lost_reason}")
        return node

    async def stop(self, sandbox_id: str, node_id: str | None = None, keep: bool = False) -> None:
        """``keep``: the node keeps its files for a restart (ROCK's stop); otherwise removed for good."""
        client = self._clients.pop(sandbox_id, None)
        if client is not None:
            client.close()
        try:
            node = self._node_of(sandbox_id, node_id)
        except SandboxNotRunning:
            return  # its node is gone; if it comes back, what runs there without a record is stopped
        await self._call(node.name, "stop", {"sandbox_id": sandbox_id, "keep": keep})
        node.unclaim(sandbox_id)  # the batch's answer (applied) is the node's count without it
        if not keep:
            self.where.pop(sandbox_id, None)

    async def _on_node(self, method: str, sandbox_id: str, node_id: str | None, *args, timeout: float):
        node = self._node_of(sandbox_id, node_id)
        try:
            result = await asyncio.wait_for(getattr(self.nodes.actor(node.name), method).remote(sandbox_id, *args), timeout)
        except asyncio.TimeoutError:
            raise RockError(f"{method} of sandbox {sandbox_id}: node {node.name} did not answer within {timeout:g}s")
        if "error" in result:
            raise _raise(result["error"])
        return node, result["ok"]

    async def restart(self, sandbox_id: str, node_id: str | None = None) -> SandboxInfo:
        """Start a stopped sandbox again on the kept files of the node it ran on."""
        node, info = await self._on_node("restart", sandbox_id, node_id, timeout=CREATE_TIMEOUT_S)
        self.where[sandbox_id] = node.name
        return SandboxInfo(**info)

    async def restore(self, sandbox_id: str, name: str, owner: str | None, node_id: str | None = None) -> SandboxInfo:
        """Roll the sandbox back in place on its node (``Worker.restore``), to a snapshot that node
        holds (another node's is missing there). This admin's connection to its agent is then
        one to the old state: closed, so the next call connects to the new one."""
        node, info = await self._on_node("restore", sandbox_id, node_id, name, owner, timeout=CREATE_TIMEOUT_S)
        client = self._clients.pop(sandbox_id, None)
        if client is not None:
            client.close(f"sandbox {sandbox_id} was restored to snapshot {name!r} while this call ran")
        return SandboxInfo(**info)

    async def commit(self, sandbox_id: str, image_tag: str, node_id: str | None = None) -> str:
        """The sandbox's files as an image in its node's engine."""
        return (await self._on_node("commit", sandbox_id, node_id, image_tag, timeout=COMMIT_TIMEOUT_S))[1]

    async def disk_usage(self, sandbox_id: str, node_id: str | None = None) -> int | None:
        """The sandbox's disk use, asked of its node."""
        return (await self._on_node("disk_usage", sandbox_id, node_id, timeout=RAY_CALL_TIMEOUT_S))[1]

    # -- pause and snapshots: a snapshot lives on the node of its source; its sandboxes start there ---

    async def pause(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Pause the sandbox on its node."""
        await self._on_node("pause", sandbox_id, node_id, timeout=RAY_CALL_TIMEOUT_S)

    async def unpause(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Resume the sandbox on its node."""
        await self._on_node("unpause", sandbox_id, node_id, timeout=RAY_CALL_TIMEOUT_S)

    async def snapshot(self, sandbox_id: str, name: str, owner: str | None, mode: str = "filesystem",
                       node_id: str | None = None, early: bool = False) -> Snapshot:
        """Take a snapshot on the sandbox's node; the snapshot is remembered as living there.
        ``early``: the node answers once the snapshot is whole (``back`` asks it for the rest)."""
        early = early and mode == "full"  # only a full snapshot has a way back to wait for
        node, data = await self._on_node("snapshot", sandbox_id, node_id, name, owner, mode, early,
                                         timeout=COMMIT_TIMEOUT_S)
        self.snapshot_where[name] = node.name
        if early:
            self._returning.add(sandbox_id)
        return Snapshot(**data)

    async def back(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Wait until the sandbox's node has it back from an ``early`` snapshot (no call to the
        node when none was taken)."""
        if sandbox_id in self._returning:
            self._returning.discard(sandbox_id)
            await self._on_node("back", sandbox_id, node_id, timeout=CREATE_TIMEOUT_S)

    async def _ask(self, node: NodeView, method: str, *args, timeout: float):
        try:
            result = await asyncio.wait_for(getattr(self.nodes.actor(node.name), method).remote(*args), timeout)
        except asyncio.TimeoutError:
            raise RockError(f"{method}: node {node.name} did not answer within {timeout:g}s") from None
        if "error" in result:
            raise _raise(result["error"])
        return result["ok"]

    async def _snapshot_node(self, name: str, owner: str | None) -> tuple[NodeView, Snapshot]:
        known = self.nodes.get(self.snapshot_where.get(name, ""))
        for node in ([known] if known is not None and known.live else []) + self.nodes.live():
            try:
                data = await self._ask(node, "get_snapshot", name, owner, timeout=RAY_CALL_TIMEOUT_S)
            except SnapshotNotFound:
                continue
            self.snapshot_where[name] = node.name
            return node, Snapshot(**data)
        raise SnapshotNotFound(f"no snapshot named {name!r}")

    async def get_snapshot(self, name: str, owner: str | None, node_id: str | None = None) -> Snapshot:
        """The owner's snapshot ``name``, from the node that holds it."""
        return (await self._snapshot_node(name, owner))[1]

    async def snapshots(self, owner: str | None) -> list[Snapshot]:
        """The owner's snapshots on every live node, by name (a node that does not answer is left out)."""
        found = await asyncio.gather(*(asyncio.wait_for(self.nodes.actor(n.name).snapshots.remote(owner), RAY_CALL_TIMEOUT_S)
                                       for n in self.nodes.live()), return_exceptions=True)
        return sorted((Snapshot(**s) for part in found if isinstance(part, list) for s in part), key=lambda s: s.name)

    async def delete_snapshot(self, name: str, owner: str | None, node_id: str | None = None) -> None:
        """Delete the owner's snapshot ``name`` on the node that holds it."""
        node, _ = await self._snapshot_node(name, owner)
        await self._ask(node, "delete_snapshot", name, owner, timeout=COMMIT_TIMEOUT_S)
        self.snapshot_where.pop(name, None)

    async def start_from(self, name: str, owner: str | None, spec: SandboxSpec, node_id: str | None = None) -> SandboxInfo:
        """On the node that holds the snapshot (its files are there), whatever that node's load:
        placement cannot choose another."""
        node, _ = await self._snapshot_node(name, owner)
        payload = spec.model_dump(mode="json")
        info = await self._ask(node, "start_from", name, owner, payload, self._secrets([payload]), timeout=CREATE_TIMEOUT_S)
        self.where[spec.sandbox_id] = node.name
        return SandboxInfo(**info)

    def fork(self, sandbox_id: str, owner: str | None, specs: list[SandboxSpec], mode: str = "filesystem",
             name: str | None = None, node_id: str | None = None):
        """A node's fork, over this worker's ``snapshot`` and ``start_from`` (``fork_children``)."""
        return fork_children(self, sandbox_id, owner, specs, mode, name, node_id)

    def capabilities(self, sandbox_id: str | None = None, node_id: str | None = None) -> list[frozenset[str]]:
        """What the backend of the node that runs ``sandbox_id`` can do, as the node reported it
        (without one: each live node's)."""
        if sandbox_id is None and node_id is None:
            return [frozenset(n.info.capabilities) for n in self.nodes.live()]
        return [frozenset(self._node_of(sandbox_id or "", node_id).info.capabilities)]

    def node_backends(self, sandbox_id: str | None = None, node_id: str | None = None) -> tuple[list[str], str]:
        """The backend of the node that runs ``sandbox_id`` (without one: the distinct backends of
        the live nodes), and a phrase naming where, for messages. What the admin asks before a
        full snapshot: the cluster's own name says nothing of what its nodes can take."""
        if sandbox_id is None and node_id is None:
            return sorted({n.info.backend for n in self.nodes.live()}), " of this cluster's live nodes"
        node = self._node_of(sandbox_id or "", node_id)
        return [node.info.backend], f" of node {node.name} (which runs sandbox {sandbox_id})"

    def node_live(self, node_id: str) -> bool:
        """Whether node ``node_id`` is known and not lost."""
        node = self.nodes.get(node_id)
        return node is not None and node.live

    def stopped_ids(self) -> list[str]:
        """Sandboxes stopped with their files kept, as the live nodes last reported them."""
        out = []
        for node in self.nodes.live():
            for sid in node.info.stopped_ids:
                self.where.setdefault(sid, node.name)
                out.append(sid)
        return out

    async def stats(self, sandbox_id: str, node_id: str | None = None) -> ResourceStats:
        """The sandbox's resource use, asked of its node."""
        node = self._node_of(sandbox_id, node_id)
        return ResourceStats(**await asyncio.wait_for(self.nodes.actor(node.name).stats.remote(sandbox_id), RAY_CALL_TIMEOUT_S))

    # -- the data path ----------------------------------------------------------------------------

    async def connect(self, sandbox_id: str, node_id: str | None = None) -> AgentClient:
        """The admin's connection to a sandbox's agent, through its node's relay (one connection, however
        many callers ask at once)."""
        client = self._clients.get(sandbox_id)
        if client is not None and not client.closed:
            return client
        try:
            node = self._node_of(sandbox_id, node_id)
        except SandboxNotRunning:
            # The caller's record says the sandbox runs (only running ones are connected to), where this
            # process last saw its node lost: the process that saw the node back first wrote that
            # record, and this one's discovery may be up to a round behind. Ask the node now.
            if await self.nodes.reattach(self._node_name(sandbox_id, node_id)) is None:
                raise
            node = self._node_of(sandbox_id, node_id)
        task = self._connecting.get(sandbox_id)
        if task is None:
            task = self._connecting[sandbox_id] = asyncio.ensure_future(
                open_agent(node.info.relay, node.info.token, sandbox_id))
            task.add_done_callback(lambda _: self._connecting.pop(sandbox_id, None))
        client = await asyncio.shield(task)
        # The agent sends its own notices (``rock model-service ...`` run inside the sandbox) on every
        # connection it has: this one is the admin's, whose chat hub answers them.
        client.on_notice = lambda meta, body: notify_listeners(self.listeners, sandbox_id, meta, body)
        self._clients[sandbox_id] = client
        self.where[sandbox_id] = node.name
        return client

    def agent(self, sandbox_id: str) -> AgentClient:
        """The open agent connection of a sandbox; ``AgentGone`` when this admin has none."""
        client = self._clients.get(sandbox_id)
        if client is None or client.closed:
            raise AgentGone(f"sandbox {sandbox_id} has no open connection from this admin")
        return client

    def run_dir(self, sandbox_id: str) -> str:
        """Refused: a node's directories are not reachable from the admin."""
        raise BadRequest("a cluster node's directories are not reachable from the admin")

    def list(self) -> list[SandboxInfo]:
        """What the live nodes reported running (for reconciling records after a restart)."""
        out = []
        for node in self.nodes.live():
            for sid in node.info.sandbox_ids:
                out.append(SandboxInfo(sandbox_id=sid, backend=node.info.backend, state="running",
                                       spec=SandboxSpec(sandbox_id=sid), created_at=0.0, host_name=node.info.host_name,
                                       host_ip=node.info.ip, runtime_id=sid, node_id=node.name))
        return out

    def status(self) -> list[dict]:
        """Every node as ``rock cluster status`` shows it: liveness, address, backends, labels, capacity,
        load and sandboxes."""
        out = []
        for node in self.nodes.all():
            info = node.info
            out.append({
                "name": node.name, "live": node.live, "lost_reason": node.lost_reason or None,
                "host_name": info.host_name, "ip": info.ip, "relay": info.relay, "backend": info.backend,
                "backends": info.backends, "labels": info.labels, "capacity": info.capacity.model_dump(),
                "reserved": node.reserved.model_dump(), "free": node.free(self.placement.overcommit).model_dump(),
                "loadavg": info.load.loadavg, "sandboxes": info.load.sandboxes, "images": len(info.images),
                "pools": info.pools,
            })
        return out
