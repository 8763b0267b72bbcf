"""The one interface every isolation backend implements, and the records it takes and returns.

A backend starts an isolated machine whose first process is the rock agent, and
returns once the agent's Unix socket accepts connections. Everything that happens
inside a sandbox afterwards goes through the agent (see ``rock.worker.agent_client``),
so backends stay small: create, destroy, alive, stats, and cleaning up leftovers.
What the backends share lives beside this: the agent's boot (``agent_boot``), its ready
signal (``ready``), what a sandbox may have of the host (``host_policy``), pause
(``pausing``), snapshots and fork (``snapshots``, ``forks``), processes (``processes``).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Awaitable, ClassVar

from rock.config import Settings
from rock.runtime import forks, pausing
from rock.runtime.host_policy import owner_key
from rock.runtime.snapshots import Snapshot, SnapshotStore
from rock.runtime.spec import ResourceStats, RuntimeHandle, SandboxSpec, VolumeBind  # noqa: F401 - the backends' names


# What a backend can do, each a boolean class attribute of its ``Runtime`` (below, with its meaning):
# the worker reports them (``Runtime.capabilities``) and nothing above ``rock.runtime`` asks a
# backend's name what it can do.
CAPABILITIES = ("egress", "full_snapshots", "host_network", "kata", "directory_images", "keeps_files")


class Runtime(abc.ABC):
    """An isolation backend: starts, stops, pauses and snapshots the sandboxes of one owner. What it
    can do it declares as class attributes (``CAPABILITIES``; ``capabilities()`` names them)."""

    name: ClassVar[str]
    isolated: ClassVar[bool] = True
    # True where a sandbox's egress policy is enforced: its traffic leaves through the egress gate
    egress: ClassVar[bool] = False
    # True where ``network=true`` is the host's network namespace: refused unless the operator allows
    # the host's network (``allow_host_network``)
    host_network: ClassVar[bool] = False
    # True where ``use_kata_runtime`` is honoured (a kata runtime of the Docker engine)
    kata: ClassVar[bool] = False
    # True where the image may be a root filesystem directory on the host (else an image name only)
    directory_images: ClassVar[bool] = False

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """The names in ``CAPABILITIES`` this backend has."""
        return frozenset(c for c in CAPABILITIES if getattr(cls, c))

    def __init__(self, settings: Settings, owner: str):
        self.settings = settings
        self.owner = owner
        self.sandboxes_dir = Path(settings.state_dir) / "sandboxes"
        self.sandboxes_dir.mkdir(parents=True, exist_ok=True)
        # Short, path- and name-safe form of the owner for cgroup paths and container names.
        self.owner_key = owner_key(owner)
        self.snapshots = SnapshotStore(Path(settings.state_dir) / "snapshots")

    @classmethod
    @abc.abstractmethod
    def available(cls) -> str | None:
        """None when usable on this machine, else the reason it is not."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        """Start the sandbox; return once its agent accepts connections."""

    @abc.abstractmethod
    async def destroy(self, handle: RuntimeHandle) -> None:
        """Kill every process of the sandbox and release what the backend holds for it."""

    async def release(self, handle: RuntimeHandle) -> None:
        """A deleted sandbox's end: every process of it killed before this returns; what is left
        (its cgroup, its files) the backend may remove in the background, but never leaves
        behind (``close`` and ``reap`` finish it). The default is ``destroy``."""
        await self.destroy(handle)

    @abc.abstractmethod
    async def alive(self, handle: RuntimeHandle) -> bool:
        """Whether the sandbox's processes still run."""

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        """The sandbox's resource use (empty where the backend cannot measure it)."""
        return ResourceStats()

    # -- keeping a sandbox's files across a stop (ROCK's stop / restart / commit) ------------

    keeps_files: ClassVar[bool] = False  # True where suspend/resume/commit are implemented
    # True where a sandbox with an egress policy must be started inside the network namespace it
    # is gated from (its handle's ``extra["netns"]`` names it): no warm sandbox serves such a start,
    # and a sandbox started without a policy cannot be given one later.
    egress_at_boot: ClassVar[bool] = False

    async def suspend(self, handle: RuntimeHandle) -> None:
        """End every process of the sandbox but keep its filesystem for ``resume``."""
        raise NotImplementedError(f"the {self.name} backend cannot keep a stopped sandbox's files")

    async def resume(self, handle: RuntimeHandle) -> RuntimeHandle:
        """Start a suspended sandbox again on its kept filesystem; return once its agent is up."""
        raise NotImplementedError(f"the {self.name} backend cannot restart a stopped sandbox")

    async def disk_usage(self, handle: RuntimeHandle) -> int | None:
        """Bytes the sandbox has written to its filesystem (None where the backend cannot tell)."""
        return None

    async def commit(self, handle: RuntimeHandle, image_tag: str) -> str:
        """Save the sandbox's filesystem as the Docker image ``image_tag``; returns the image id."""
        raise NotImplementedError(f"the {self.name} backend cannot commit a sandbox to an image")

    # -- pause, snapshots, fork -----------------------------------------------------------
    #
    # Pause keeps the processes where they stand, in memory; ``suspend`` above ends them and keeps
    # only the files. A snapshot is an owned, named object (``rock.runtime.snapshots``) that
    # outlives its source; ``filesystem`` is the writable layer at one instant (the sandbox frozen
    # for that instant only), ``full`` adds memory and processes (gVisor only).

    full_snapshots: ClassVar[bool] = False  # True where snapshot(mode="full") works

    def paused(self, handle: RuntimeHandle) -> bool:
        """Whether the sandbox is paused, by its record on disk (true across a worker restart)."""
        return pausing.is_paused(handle)

    async def pause(self, handle: RuntimeHandle) -> None:
        """Stop every process of the sandbox where it stands, memory kept: it uses no CPU until
        ``unpause``. Recorded on disk beside the sandbox (a new worker sees it) and in ``handle``:
        an agent client connected with that handle refuses calls with SandboxPaused at once."""
        await pausing.pause(self, handle)

    async def unpause(self, handle: RuntimeHandle) -> None:
        """Let a paused sandbox's processes run on from where they stopped (``resume`` is the
        restart of a stopped sandbox over its kept files, a different thing)."""
        await pausing.unpause(self, handle)

    def frozen(self, handle: RuntimeHandle):
        """An async context: the sandbox frozen for the length of the block (a paused one stays
        paused after it)."""
        return pausing.frozen(self, handle)

    async def _freeze(self, handle: RuntimeHandle) -> None:
        raise NotImplementedError(f"the {self.name} backend cannot pause a sandbox")

    async def _thaw(self, handle: RuntimeHandle) -> None:
        raise NotImplementedError(f"the {self.name} backend cannot resume a paused sandbox")

    async def snapshot(self, handle: RuntimeHandle, name: str, owner: str, mode: str = "filesystem") -> "Snapshot":
        """Save the sandbox's state as the snapshot ``name`` of ``owner``. ``filesystem``: its
        writable layer, the sandbox frozen only while that is taken; ``full``: its memory and
        processes too (a backend without ``full_snapshots`` refuses with BadRequest)."""
        return await forks.take_snapshot(self, handle, name, owner, mode)

    async def begin_snapshot(self, handle: RuntimeHandle, name: str, owner: str,
                             mode: str = "filesystem") -> tuple["Snapshot", Awaitable[None] | None]:
        """``snapshot`` in two steps: returns once the snapshot is whole and recorded (usable by
        ``start_from``), with what the source still has to do to go on (a ``full`` snapshot on
        gVisor restores the source from the image), or None. The caller must await it; until it
        ends a delete of the snapshot waits, and if it fails the snapshot is deleted."""
        return await forks.begin_snapshot(self, handle, name, owner, mode)

    async def start_from(self, snapshot: "Snapshot", spec: SandboxSpec | None = None) -> RuntimeHandle:
        """Start a sandbox from ``snapshot``: its files (and, ``full``, its processes) as they were.
        ``spec``: the new sandbox's (its id; limits default to the snapshot's source)."""
        async with self.snapshots.in_use(snapshot):  # deleted meanwhile: SnapshotNotFound, not half a start
            return await self._start_from(snapshot, forks.child_spec(self, snapshot, spec))

    async def _snapshot(self, handle: RuntimeHandle, snapshot: "Snapshot", path: Path) -> Awaitable[None] | None:
        """Save the sandbox's part of ``snapshot`` under ``path``. Returns None once the source is
        running as before, or what the source still has to do to go on (awaited by the caller, a
        fork's beside its children's starts: the snapshot is whole and usable before it)."""
        raise NotImplementedError(f"the {self.name} backend cannot take snapshots")

    async def _start_from(self, snapshot: "Snapshot", spec: SandboxSpec) -> RuntimeHandle:
        raise NotImplementedError(f"the {self.name} backend cannot start sandboxes from snapshots")

    def rolls_back(self, handle: RuntimeHandle, snapshot: "Snapshot") -> bool:
        """Whether ``rollback_plan`` can turn this running sandbox's files into the snapshot's in
        place (a snapshot of this very sandbox, on layers it still stands on)."""
        return False

    async def rollback_plan(self, handle: RuntimeHandle, snapshot: "Snapshot") -> Any:
        """What the sandbox's agent applies (``reset.apply``) to make its files the snapshot's,
        computed once its processes have ended; None where it cannot be computed (the caller
        starts the snapshot anew instead)."""
        return None

    async def delete_snapshot(self, snapshot: "Snapshot") -> None:
        """Remove the snapshot for good; sandboxes started from it go on, and those starting
        from it now are let finish first."""
        await self.snapshots.retire(snapshot.name)
        try:
            await self._delete_snapshot(snapshot)
        except BaseException:
            self.snapshots.save(snapshot)  # refused (an engine image in use): the snapshot stays
            raise
        self.snapshots.remove(snapshot.name)

    async def _delete_snapshot(self, snapshot: "Snapshot") -> None:
        """What the backend keeps for a snapshot outside its directory (an engine image)."""

    async def fork(self, handle: RuntimeHandle, n: int, owner: str, mode: str = "filesystem",
                   name: str | None = None) -> tuple["Snapshot", list[RuntimeHandle]]:
        """Start ``n`` sandboxes from a fresh snapshot of a running one (with ``full``, each goes
        on with the parent's processes). Returns the snapshot, which the caller deletes when it is
        no longer wanted (an engine image stays in use while its children run), and the children."""
        return await forks.fork(self, handle, n, owner, mode, name)

    async def _start_children(self, snapshot: "Snapshot", n: int) -> list[RuntimeHandle]:
        """A fork's ``n`` children from its snapshot, all or none (the default: ``start_from`` n
        times at once; a backend may share work between them)."""
        return await forks.start_each(self, snapshot, n)

    async def start(self) -> None:
        """Prepare, once per worker, what every create needs (off the first create's path)."""

    async def close(self) -> None:
        """Release what ``start`` prepared; running sandboxes are not touched."""

    async def reap(self, known: set[str]) -> list[str]:
        """Remove leftovers of this owner that no known sandbox uses; return their sandbox ids.

        ``known`` is every sandbox id still in use in this state dir: a state dir belongs to
        one owner, so whatever else lies in it is a leftover. Backends also remove what
        belongs to owners whose state dir no longer exists.
        """
        return []
