"""What the admin may ask of a worker and what a worker tells the admin: the seam between them.

Four classes satisfy ``WorkerOps``: the single-node ``Worker`` (rock.worker.worker), the proxy's
``AttachedWorker`` (rock.worker.attached), the ``ClusterWorker`` (rock.cluster.client) and the
``SimulatedCluster`` (rock.cluster.simulated). The admin above this seam has one code path for
all of them; where they differ, the worker declares it (``clustered``, ``node_live``,
``status``) instead of being probed for attributes. ``tests/worker/test_protocol.py`` compares
each implementation's signatures with this one.

A worker's events go to ``WorkerListener`` objects in its ``listeners`` (the sandbox records,
the chat hub); a listener overrides the events it handles, the rest are no-ops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the seam adds no import edge to what implements it
    from rock.runtime.spec import ResourceStats, SandboxSpec
    from rock.runtime.snapshots import Snapshot
    from rock.worker.agent_client import AgentClient
    from rock.worker.worker import SandboxInfo


class WorkerListener:
    """The events a worker reports; each a no-op here, overridden by the listeners that want it."""

    async def sandbox_lost(self, sandbox_id: str, reason: str) -> None:
        """The sandbox's agent went away on its own (killed, crashed, out of memory)."""

    def agent_notice(self, sandbox_id: str, meta: dict[str, Any], body: bytes) -> None:
        """A notice sent from inside the sandbox (``rock model-service ...``)."""

    async def node_lost(self, name: str, reason: str) -> None:
        """A cluster node stopped answering; its sandboxes cannot be reached."""

    async def node_back(self, name: str, sandbox_ids: list[str]) -> None:
        """A cluster node answers again, running ``sandbox_ids``."""


class PoolView(Protocol):
    """The warm pools as the admin's UI and metrics read them."""

    def size(self) -> int:
        """Sandboxes ready in the pools now."""
        ...

    def summary(self) -> list[dict[str, Any]]:
        """One row per pool: image, size, sandboxes ready."""
        ...


class WorkerOps(Protocol):
    """The operations of a worker, as the admin calls them. ``node_id`` is the cluster's (the
    node a record says runs the sandbox); a single-node worker ignores it."""

    backend_name: str
    clustered: bool  # its sandboxes run on nodes it reaches over the network (``status`` lists them)
    listeners: list[WorkerListener]
    pool: PoolView

    async def start(self) -> None:
        """Start serving (re-attach what still runs)."""
        ...

    async def close(self, stop_sandboxes: bool = False) -> None:
        """Let go of every connection; with ``stop_sandboxes``, end the sandboxes first."""
        ...

    def check(self, spec: SandboxSpec) -> None:
        """Refuse (BadRequest) what this worker could never start, before anything is recorded."""
        ...

    async def create(self, spec: SandboxSpec, timeout: float | None = None) -> SandboxInfo:
        """Start a sandbox; idempotent per ``spec.sandbox_id``."""
        ...

    async def stop(self, sandbox_id: str, node_id: str | None = None, keep: bool = False) -> bool | None:
        """End the sandbox; ``keep``: keep its files for ``restart`` where the backend can."""
        ...

    async def restart(self, sandbox_id: str, node_id: str | None = None) -> SandboxInfo:
        """Start a stopped sandbox again on its kept files."""
        ...

    async def commit(self, sandbox_id: str, image_tag: str, node_id: str | None = None) -> str:
        """Save the sandbox's filesystem as an image; returns its id."""
        ...

    async def pause(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Freeze the sandbox's processes in memory."""
        ...

    async def unpause(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Thaw a paused sandbox."""
        ...

    async def get_snapshot(self, name: str, owner: str | None, node_id: str | None = None) -> Snapshot:
        """The owner's snapshot ``name`` (SnapshotNotFound otherwise)."""
        ...

    async def snapshots(self, owner: str | None) -> list[Snapshot]:
        """The owner's snapshots, by name."""
        ...

    async def delete_snapshot(self, name: str, owner: str | None, node_id: str | None = None) -> None:
        """Remove the owner's snapshot for good."""
        ...

    async def snapshot(self, sandbox_id: str, name: str, owner: str | None, mode: str = "filesystem",
                       node_id: str | None = None, early: bool = False) -> Snapshot:
        """Save the sandbox's state as the owner's snapshot ``name``. ``early``: return once the
        snapshot is whole (sandboxes can start from it), while the sandbox itself may still be on
        its way back (a full snapshot on gVisor restores it); the caller then awaits ``back``."""
        ...

    async def back(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Wait until the sandbox is back from an ``early`` snapshot (at once when none is under
        way); raises what its way back failed with."""
        ...

    async def start_from(self, name: str, owner: str | None, spec: SandboxSpec,
                         node_id: str | None = None) -> SandboxInfo:
        """Start ``spec.sandbox_id`` from the owner's snapshot ``name``."""
        ...

    async def restore(self, sandbox_id: str, name: str, owner: str | None, node_id: str | None = None) -> SandboxInfo:
        """Roll the sandbox back in place to the owner's snapshot ``name`` (the same id, the snapshot's files)."""
        ...

    def fork(self, sandbox_id: str, owner: str | None, specs: list[SandboxSpec], mode: str = "filesystem",
             name: str | None = None, node_id: str | None = None) -> Any:
        """Start ``len(specs)`` sandboxes from a fresh snapshot of ``sandbox_id`` (an async iterator)."""
        ...

    async def disk_usage(self, sandbox_id: str, node_id: str | None = None) -> int | None:
        """Bytes the sandbox's writable layer holds (None where the backend cannot tell)."""
        ...

    async def stats(self, sandbox_id: str, node_id: str | None = None) -> ResourceStats:
        """The sandbox's cpu, memory and pids now."""
        ...

    def capabilities(self, sandbox_id: str | None = None, node_id: str | None = None) -> list[frozenset[str]]:
        """What the backend that runs the sandbox can do (``rock.runtime.CAPABILITIES``); without one,
        each live node's backend's (one set per backend a start could land on)."""
        ...

    def node_backends(self, sandbox_id: str | None = None, node_id: str | None = None) -> tuple[list[str], str]:
        """The backends that run the sandbox (or every live node's), and a phrase naming where."""
        ...

    def node_live(self, node_id: str) -> bool:
        """Whether the named cluster node answers (a single-node worker has no named nodes)."""
        ...

    def status(self) -> list[dict[str, Any]]:
        """One row per node: name, liveness, backend, capacity, what is reserved and free."""
        ...

    def stopped_ids(self) -> list[str]:
        """Sandboxes stopped with their files kept."""
        ...

    async def connect(self, sandbox_id: str, node_id: str | None = None) -> AgentClient:
        """The sandbox's agent client, connecting first where needed."""
        ...

    def agent(self, sandbox_id: str) -> AgentClient:
        """The sandbox's agent client if one is open (AgentGone otherwise)."""
        ...

    def list(self) -> list[SandboxInfo]:
        """The sandboxes this worker runs."""
        ...
