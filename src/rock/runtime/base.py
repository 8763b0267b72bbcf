"""The one interface every isolation backend implements.

A backend starts an isolated machine whose first process is the rock agent, and
returns once the agent's Unix socket accepts connections. Everything that happens
inside a sandbox afterwards goes through the agent (see ``rock.worker.agent_client``),
so backends stay small: create, destroy, alive, stats, and cleaning up leftovers.

Inside every sandbox the layout is the same:
    /.rock/lib/rock_agent   the agent package, read-only
    /.rock/run              a host directory, read-write: ``agent.sock`` and the ``ready`` FIFO
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from rock.config import Settings
# Re-exported: the backends have imported these from here since before they had a module of their own.
from rock.runtime.processes import (  # noqa: F401
    exit_future,
    exit_reason,
    pid_exit_future,
    process_alive,
    process_start_time,
    tail,
)

if TYPE_CHECKING:
    from rock.runtime.snapshots import Snapshot
from rock.errors import BadRequest, SandboxPaused, SandboxStartError

AGENT_SRC = Path(__file__).resolve().parent.parent / "agent"
SANDBOX_LIB = "/.rock/lib"
SANDBOX_RUN = "/.rock/run"
# What root inside any sandbox may still do: own and chmod files (package managers, tar, the
# agent's chown op), bypass file permissions as root does, drop to another uid/gid (apt's _apt
# user, su), and signal processes of other uids. Not: mount, raw sockets, mknod, tracing other
# users' processes, module loading, or anything else in CAP_SYS_*. Backends add
# NET_BIND_SERVICE only where the sandbox has a network namespace of its own.
SANDBOX_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
SOCKET_NAME = "agent.sock"
READY_NAME = "ready"
# How long a backend waits for the agent's ready line (a first start of an image can be slow).
READY_TIMEOUT = 60.0
# Unix socket paths longer than this cannot be bound or connected to (sun_path is 108 bytes).
MAX_SOCKET_PATH = 107


def owner_key(owner: str) -> str:
    """The short key of an owner's sandboxes: cgroups are ``rock/<owner key>/<id>``."""
    return hashlib.sha256(owner.encode()).hexdigest()[:12]


def is_host_path(image: str | None) -> bool:
    """An image that names the host's own files: '/' (the host root) or an absolute path to a
    root filesystem directory or tar. A relative name is always an image name, never a path
    looked up in the server's working directory."""
    return bool(image) and image.startswith("/")


def host_path_refused(image: str | None) -> BadRequest:
    what = "the host's own root filesystem" if not image or image.rstrip("/") == "" else "a path on the host"
    return BadRequest(f"image {image or '/'!r} is {what}: a sandbox of it would see the host's files, and this server "
                      "does not allow that; use an image name (e.g. python:3.11). An operator may allow host paths as "
                      "images with the setting allow_host_paths (ROCK_ALLOW_HOST_PATHS=true)")


def host_network_refused() -> BadRequest:
    return BadRequest("network=true on the bwrap backend shares the host's network namespace: the sandbox would reach "
                      "every service on the host's loopback. Use the docker backend for sandboxes with a network; an "
                      "operator may allow it with the setting allow_host_network (ROCK_ALLOW_HOST_NETWORK=true)")


def check_peer(sock, handle: "RuntimeHandle") -> None:
    """The process at the far end of a socket under a sandbox's run folder must be inside that
    sandbox (its cgroup). The folder is the sandbox's to write: its root may have put a link to a
    host socket (the engine's, another service's) where the agent's was, and a connect follows it."""
    import socket
    import struct

    if handle.backend not in ("docker", "bwrap", "gvisor"):
        return  # the local backend isolates nothing
    pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            paths = [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        paths = []
    if handle.backend == "docker":
        inside = any(handle.runtime_id in p for p in paths)
    else:
        inside = any(p == "/" + handle.runtime_id or p.startswith("/" + handle.runtime_id + "/") for p in paths)
    if not inside:
        from rock.errors import AgentGone

        raise AgentGone(f"the socket of sandbox {handle.sandbox_id} is served by a process outside it (pid {pid}): "
                        "its run folder was tampered with; not connecting")


class SandboxSpec(BaseModel):
    """What a caller asks a backend for."""

    model_config = ConfigDict(extra="forbid")

    sandbox_id: str
    image: str | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = 1024
    network: bool = False
    max_file_bytes: int | None = None  # no file grows past it (None: the settings' max_file_bytes; 0: no limit)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    pull_policy: str = "missing"  # missing | always | never: when to pull the image (engine-backed images)
    # Registry login for the pull; never persisted with the rest of the spec.
    registry_auth: dict[str, str] | None = Field(default=None, exclude=True)
    runtime: str | None = None  # an engine runtime other than the default (e.g. kata)
    # Placement: whole GPUs wanted, disk promised, labels the node must carry (accelerator_type too).
    gpus: int = 0
    disk_bytes: int | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    # The GPUs the node gave this sandbox (its /dev/nvidiaN), set by the worker, not by callers.
    gpu_ids: list[int] = Field(default_factory=list)
    # Host paths mounted read-only at the same path: only the env image builder sets these (the
    # operator's package index and CA bundle in a build sandbox); no request field reaches them.
    ro_binds: list[str] = Field(default_factory=list)


class RuntimeHandle(BaseModel):
    """What a backend needs to find a sandbox again, also after a worker restart (persisted as JSON)."""

    sandbox_id: str
    backend: str
    runtime_id: str
    run_dir: str
    spec: SandboxSpec
    pid: int | None = None
    created_at: float = Field(default_factory=time.time)
    extra: dict[str, str] = Field(default_factory=dict)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, SOCKET_NAME)

    @property
    def start_time(self) -> int | None:
        """Start time of ``pid`` (see ``process_start_time``) where the backend recorded one."""
        value = self.extra.get("start_time", "")
        return int(value) if value.isdigit() else None


def unusable_reason(tool: str, missing: str, why_root: str) -> str | None:
    """Why a backend that runs ``tool`` as root over our own cgroups cannot run here, or None."""
    from rock.runtime import cgroups

    if not shutil.which(tool):
        return missing
    if os.geteuid() != 0:
        return why_root
    if not cgroups.is_v2() and not cgroups.v1_mounts():
        return "no cgroup hierarchy is mounted"
    return None


PAUSED_NAME = "paused"  # in the sandbox's directory (outside its view): the record that it is paused


def paused_marker(handle: "RuntimeHandle") -> Path:
    return Path(handle.run_dir).parent / PAUSED_NAME


def refuse_if_paused(handle: "RuntimeHandle", on_disk: bool = False) -> None:
    """SandboxPaused when the sandbox is paused: its agent is frozen and would not answer.
    ``on_disk``: also ask its record (another handle object, another process may have paused it)."""
    if handle.extra.get("paused") or (on_disk and paused_marker(handle).exists()):
        raise SandboxPaused(f"sandbox {handle.sandbox_id} is paused: resume it first")


class ResourceStats(BaseModel):
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    pids: int | None = None
    pids_limit: int | None = None


class Runtime(abc.ABC):
    name: ClassVar[str]
    isolated: ClassVar[bool] = True

    def __init__(self, settings: Settings, owner: str):
        self.settings = settings
        self.owner = owner
        self.sandboxes_dir = Path(settings.state_dir) / "sandboxes"
        self.sandboxes_dir.mkdir(parents=True, exist_ok=True)
        # Short, path- and name-safe form of the owner for cgroup paths and container names.
        self.owner_key = owner_key(owner)
        from rock.runtime.snapshots import SnapshotStore  # it names SandboxSpec, from here

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
    async def alive(self, handle: RuntimeHandle) -> bool: ...

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        return ResourceStats()

    # -- keeping a sandbox's files across a stop (ROCK's stop / restart / commit) ------------

    keeps_files: ClassVar[bool] = False  # True where suspend/resume/commit are implemented

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
        return paused_marker(handle).exists()

    async def pause(self, handle: RuntimeHandle) -> None:
        """Stop every process of the sandbox where it stands, memory kept: it uses no CPU until
        ``unpause``. Recorded on disk beside the sandbox (a new worker sees it) and in ``handle``:
        an agent client connected with that handle refuses calls with SandboxPaused at once."""
        if self.paused(handle):
            handle.extra["paused"] = "1"
            return
        await self._freeze(handle)
        paused_marker(handle).write_text(f"{time.time():.3f}\n")
        handle.extra["paused"] = "1"

    async def unpause(self, handle: RuntimeHandle) -> None:
        """Let a paused sandbox's processes run on from where they stopped (``resume`` is the
        restart of a stopped sandbox over its kept files, a different thing)."""
        if self.paused(handle):
            await self._thaw(handle)
            paused_marker(handle).unlink(missing_ok=True)
        handle.extra.pop("paused", None)

    @contextlib.asynccontextmanager
    async def frozen(self, handle: RuntimeHandle):
        """The sandbox frozen for the length of the block (a paused one stays paused after it)."""
        was_paused = self.paused(handle)
        if not was_paused:
            await self._freeze(handle)
        try:
            yield
        finally:
            if not was_paused:
                await self._thaw(handle)

    async def _freeze(self, handle: RuntimeHandle) -> None:
        raise NotImplementedError(f"the {self.name} backend cannot pause a sandbox")

    async def _thaw(self, handle: RuntimeHandle) -> None:
        raise NotImplementedError(f"the {self.name} backend cannot resume a paused sandbox")

    async def snapshot(self, handle: RuntimeHandle, name: str, owner: str, mode: str = "filesystem") -> "Snapshot":
        """Save the sandbox's state as the snapshot ``name`` of ``owner``. ``filesystem``: its
        writable layer, the sandbox frozen only while that is taken; ``full``: its memory and
        processes too (a backend without ``full_snapshots`` refuses with BadRequest)."""
        from rock.runtime.snapshots import Snapshot

        if mode == "full" and not self.full_snapshots:
            raise BadRequest(f"the {self.name} backend cannot take full (memory) snapshots; take a filesystem "
                             "snapshot, or run the sandbox on the gvisor backend")
        path = self.snapshots.claim(name, mode)
        snap = Snapshot(name=name, owner=owner, backend=self.name, mode=mode, source=handle.sandbox_id,
                        spec=handle.spec)
        try:
            t0 = time.perf_counter()
            await self._snapshot(handle, snap, path)
            snap.took_ms = snap.took_ms if snap.took_ms is not None else (time.perf_counter() - t0) * 1e3
            self.snapshots.save(snap)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._delete_snapshot(snap)
            self.snapshots.remove(name)
            raise
        return snap

    async def start_from(self, snapshot: "Snapshot", spec: SandboxSpec | None = None) -> RuntimeHandle:
        """Start a sandbox from ``snapshot``: its files (and, ``full``, its processes) as they were.
        ``spec``: the new sandbox's (its id; limits default to the snapshot's source)."""
        if snapshot.backend != self.name:
            raise BadRequest(f"snapshot {snapshot.name!r} was taken on the {snapshot.backend} backend; this one is "
                             f"{self.name}")
        spec = spec or snapshot.spec.model_copy(update={"sandbox_id": f"{snapshot.source[:12]}-{os.urandom(4).hex()}"})
        return await self._start_from(snapshot, spec)

    async def _snapshot(self, handle: RuntimeHandle, snapshot: "Snapshot", path: Path) -> None:
        raise NotImplementedError(f"the {self.name} backend cannot take snapshots")

    async def _start_from(self, snapshot: "Snapshot", spec: SandboxSpec) -> RuntimeHandle:
        raise NotImplementedError(f"the {self.name} backend cannot start sandboxes from snapshots")

    async def delete_snapshot(self, snapshot: "Snapshot") -> None:
        """Remove the snapshot for good; sandboxes started from it go on."""
        await self._delete_snapshot(snapshot)
        self.snapshots.remove(snapshot.name)

    async def _delete_snapshot(self, snapshot: "Snapshot") -> None:
        """What the backend keeps for a snapshot outside its directory (an engine image)."""

    async def fork(self, handle: RuntimeHandle, n: int, owner: str, mode: str = "filesystem",
                   name: str | None = None) -> tuple["Snapshot", list[RuntimeHandle]]:
        """Start ``n`` sandboxes from a fresh snapshot of a running one (with ``full``, each goes
        on with the parent's processes). Returns the snapshot, which the caller deletes when it is
        no longer wanted (an engine image stays in use while its children run), and the children."""
        if not 1 <= n <= 256:
            raise BadRequest(f"fork of {n} sandboxes: ask for 1 to 256")
        snap = await self.snapshot(handle, name or f"fork-{handle.sandbox_id[:24]}-{os.urandom(4).hex()}", owner, mode)
        results = await asyncio.gather(*(self.start_from(snap) for _ in range(n)), return_exceptions=True)
        children = [r for r in results if isinstance(r, RuntimeHandle)]
        failed = [r for r in results if not isinstance(r, RuntimeHandle)]
        if failed:
            for child in children:
                with contextlib.suppress(Exception):
                    await self.destroy(child)
            with contextlib.suppress(Exception):
                await self.delete_snapshot(snap)
            raise failed[0]
        return snap, children

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

    # -- helpers shared by the backends ------------------------------------------------

    def prepare_run_dir(self, sandbox_id: str) -> Path:
        run = self.sandboxes_dir / sandbox_id / "run"
        if len(str(run / SOCKET_NAME)) > MAX_SOCKET_PATH:
            raise SandboxStartError(
                f"agent socket path {run / SOCKET_NAME} is longer than {MAX_SOCKET_PATH} bytes; use a shorter state_dir"
            )
        if run.exists():
            shutil.rmtree(run)
        run.mkdir(parents=True, mode=0o700)
        os.mkfifo(run / READY_NAME, 0o600)
        return run

    def agent_argv(self, python: str | None = None, lib: str = SANDBOX_LIB, run: str = SANDBOX_RUN) -> list[str]:
        """Command that starts the agent inside a sandbox: the image's python3 if it has one.

        ``lib`` and ``run`` are where the sandbox sees the agent package and the run
        directory; only the local backend, which has no mount namespace, changes them.
        """
        boot = f"{lib}/rock_agent/boot.py"
        args = ["--socket", f"{run}/{SOCKET_NAME}", "--ready", f"{run}/{READY_NAME}"]
        if python:
            return [python, "-I", "-S", boot, *args]
        script = 'command -v python3 >/dev/null 2>&1 && exec python3 -I -S "$0" "$@"; exec "$ROCK_HOST_PYTHON" -I -S "$0" "$@"'
        return ["/bin/sh", "-c", script, boot, *args]

    def sandbox_env(self, spec: SandboxSpec) -> dict[str, str]:
        """Environment every backend gives the agent (the spec's own variables win)."""
        limit = spec.max_file_bytes if spec.max_file_bytes is not None else self.settings.max_file_bytes
        merge = {"ROCK_AGENT_MERGE_MEMORY": "1", "ROCK_AGENT_MERGE_AFTER": f"{self.settings.merge_agent_memory_after_s:g}"} \
            if self.settings.merge_agent_memory else {}
        return {"ROCK_HOST_PYTHON": self.settings.host_python, "ROCK_SANDBOX_ID": spec.sandbox_id,
                "ROCK_MAX_FILE_BYTES": str(limit), **merge, **self.agent_env, **spec.env}

    # Variables a backend adds for its agent (see rock.agent.server.harden).
    agent_env: dict[str, str] = {}

    async def wait_ready(self, run_dir: Path, died: asyncio.Future | None, timeout: float) -> None:
        """Wait for the agent's ready line on the FIFO: no polling, no sleeping.

        ``died`` completes if the sandbox's first process exits first (its result is the reason).
        """
        fifo = ReadyFifo(run_dir)
        try:
            await fifo.wait([died] if died is not None else [], timeout)
        finally:
            fifo.close()


class ReadyFifo:
    """The FIFO a sandbox's agent says it is ready on. Opened before the agent can start: its
    non-blocking write needs a reader, and O_RDWR keeps the FIFO from reporting EOF before it."""

    def __init__(self, run_dir: Path):
        self.fd = os.open(run_dir / READY_NAME, os.O_RDWR | os.O_NONBLOCK)

    async def wait(self, died: list[asyncio.Future], timeout: float) -> None:
        """Wait for the agent's line; fail with the result of whichever of ``died`` completes first."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future = loop.create_future()

        def on_readable() -> None:
            try:
                data = os.read(self.fd, 64)
            except BlockingIOError:
                return
            if data and not ready.done():
                ready.set_result(data)

        loop.add_reader(self.fd, on_readable)
        try:
            done, _ = await asyncio.wait({ready, *died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if ready in done:
                return
            for future in died:
                if future in done:
                    raise SandboxStartError(f"sandbox exited before its agent was ready: {future.result()}")
            raise SandboxStartError(f"agent not ready after {timeout:.0f}s")
        finally:
            loop.remove_reader(self.fd)

    def close(self) -> None:
        os.close(self.fd)
