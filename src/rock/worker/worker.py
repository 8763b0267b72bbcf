"""One node's sandboxes: create (from a warm pool when one matches), stop, list, stats,
and re-attaching what still runs after the worker itself restarts."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import hashlib
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from pydantic import BaseModel

from rock.config import Settings
from rock.errors import AgentGone, BadRequest, Conflict, SandboxNotFound
from rock.runtime import backends_with, get_runtime_class, pick_backend
from rock.runtime.agent_boot import AGENT_SRC
from rock.runtime.base import ResourceStats, Runtime, RuntimeHandle, SandboxSpec
from rock.runtime.egress.broker import Broker
from rock.runtime.egress.service import Egress
from rock.runtime.gpus import Gpus
from rock.runtime.snapshots import Snapshot
from rock.worker.agent_client import AgentClient
from rock.worker.kept import StoppedSandboxes
from rock.worker.pool import WarmPool, pool_key
from rock.worker.protocol import WorkerListener
from rock.worker.records import RecordFiles
from rock.worker.snapshots import fork_children, owner_key
from rock.worker.resources import Need, Resources, refuse_oversized

log = logging.getLogger("rock.worker")


def usable_id(sandbox_id: str) -> bool:
    """A sandbox id names files and directories (records, run dirs): no path tricks."""
    return bool(sandbox_id) and "/" not in sandbox_id and not sandbox_id.startswith(".") and len(sandbox_id) <= 128


class SandboxInfo(BaseModel):
    """A running sandbox as its worker reports it: id, backend, state (running, paused, or failed once its
    agent is gone), spec, host and the runtime's own id."""

    sandbox_id: str
    backend: str
    state: str
    spec: SandboxSpec
    created_at: float
    host_name: str
    host_ip: str = "127.0.0.1"
    runtime_id: str
    warm: bool = False  # handed out from a warm pool
    node_id: str | None = None  # the cluster node (None: this process's own worker)


# Backends whose sandboxes have a kernel network namespace of their own to link the gate into
# (gVisor's, with a policy, run in one the runtime makes before boot; local ones have none).


class Sandbox:
    """A running sandbox as the worker holds it: where it runs and the open agent connection."""

    __slots__ = ("sandbox_id", "handle", "client", "spec", "warm")

    def __init__(self, sandbox_id: str, handle: RuntimeHandle, client: AgentClient, spec: SandboxSpec, warm: bool = False):
        self.sandbox_id = sandbox_id
        self.handle = handle
        self.client = client
        self.spec = spec
        self.warm = warm


def memory_merging(wanted: bool) -> str:
    """Whether the agents' memory is merged across sandboxes (KSM), for the operator's log."""
    if not wanted:
        return "off"
    try:
        running = Path("/sys/kernel/mm/ksm/run").read_text().strip() == "1"
    except OSError:
        return "unavailable (this kernel has no KSM)"
    return "on" if running else "offered, but KSM is not running (echo 1 > /sys/kernel/mm/ksm/run)"


def notify_listeners(listeners: list[WorkerListener], sandbox_id: str, meta: dict, body: bytes) -> None:
    """A notice from inside a sandbox (e.g. ``rock model-service start``) for whichever admin
    part handles it (the chat hub)."""
    for listener in listeners:
        listener.agent_notice(sandbox_id, meta, body)


class Worker:
    """One node's sandboxes on one backend (``WorkerOps``): the admin's embedded worker, and what
    each cluster node's actor drives."""

    clustered = False

    def __init__(self, settings: Settings, backend: str | None = None):
        self.settings = settings
        self.backend_name = pick_backend(backend or settings.backend)
        state = Path(settings.state_dir).resolve()
        self.owner = self.owner_of(state)
        self.runtime: Runtime = get_runtime_class(self.backend_name)(settings, self.owner)
        records_dir = state / "records"
        records_dir.mkdir(parents=True, exist_ok=True)
        self.host_name = socket.gethostname()
        self._sandboxes: dict[str, Sandbox] = {}
        # Stopped with their files kept (ROCK's stop): no processes, restartable; on disk only.
        self._stopped = StoppedSandboxes(records_dir)
        # Running: one record file each, read again when a worker restarts on this state dir.
        self.records = RecordFiles(records_dir, self.runtime, self.backend_name, self._stopped)
        self._creating: dict[str, asyncio.Task] = {}
        self._returning: dict[str, asyncio.Future] = {}  # sandbox id -> its way back from an early snapshot
        self.pool = WarmPool(self._launch, self._discard)
        self.gpus = Gpus(settings.gpus)
        self.egress = Egress(owner_key(self.owner), settings.egress_hosts, settings.sandbox_network_deny)
        self.egress.gate.broker = Broker(state / "egress-ca", settings.egress_ca_file)
        self.listeners: list[WorkerListener] = []  # the admin's records, the chat hub

    # -- lifecycle -------------------------------------------------------------------------

    @staticmethod
    def owner_of(state_dir: Path) -> str:
        """Who owns the sandboxes of the worker on ``state_dir`` (its runtime's reaps go by it)."""
        return f"{socket.gethostname()}:{Path(state_dir).resolve()}"

    async def start(self) -> None:
        # The agent dir is mounted read-only into sandboxes: compile it once here, or every
        # sandbox start would pay for compiling it.
        """Make the worker ready: compile the agent once, start the runtime, re-attach the sandboxes its
        records name, reap the runtime's leftovers of this worker, and fill the warm pool."""
        await asyncio.to_thread(compileall.compile_dir, str(AGENT_SRC), quiet=1)
        await self.runtime.start()
        await self._reattach()
        removed = await self.runtime.reap(self._known_runtime_ids())
        if removed:
            log.info("reaped %d leftover sandbox(es) of this worker: %s", len(removed), ", ".join(removed))
        if self.settings.pool_size > 0:
            self.pool.configure(self.default_spec(), self.settings.pool_size)
        log.info("worker ready: backend=%s state=%s sandboxes=%d agent memory merging=%s", self.backend_name,
                 self.settings.state_dir, len(self._sandboxes), memory_merging(self.settings.merge_agent_memory))

    async def close(self, stop_sandboxes: bool = False) -> None:
        """Stop the pool and the connections to the sandboxes' agents; the sandboxes keep running unless
        ``stop_sandboxes`` (a restarted worker re-attaches them)."""
        await self.pool.close()
        await asyncio.gather(*self._returning.values(), return_exceptions=True)  # sandboxes on their way back
        for task in list(self._creating.values()):
            task.cancel()
        if stop_sandboxes:
            await asyncio.gather(*(self.stop(sid) for sid in list(self._sandboxes)), return_exceptions=True)
        for sandbox in self._sandboxes.values():
            sandbox.client.close()
        await self.egress.close()
        await self.runtime.close()

    def default_spec(self, sandbox_id: str = "") -> SandboxSpec:
        """The spec of a sandbox started with no options: the settings' image, memory, cpus and pids limit."""
        from rock.worker.sizes import parse_memory

        return SandboxSpec(
            sandbox_id=sandbox_id, image=self.settings.default_image,
            memory_bytes=parse_memory(self.settings.default_memory), cpus=self.settings.default_cpus,
            pids_limit=self.settings.pids_limit,
        )

    # -- create / stop ---------------------------------------------------------------------

    def check(self, spec: SandboxSpec) -> None:
        """Refuse what this machine can never give (before anything is recorded)."""
        if spec.egress is not None:
            self._egress_backend()
        if spec.gpus > self.gpus.total:
            raise BadRequest(f"sandbox asks for {spec.gpus} GPU(s); this machine has {self.gpus.total}"
                             + ("" if self.gpus.total else " (no GPU found: nvidia-smi and /dev/nvidia* show none)"))
        wanted = spec.node_selector.get("accelerator_type")
        if wanted and not self.gpus.total:  # one machine: no silent drop of a GPU type it cannot have
            raise BadRequest(f"accelerator_type={wanted!r}: this machine has no GPU"
                             " (nvidia-smi and /dev/nvidia* show none); leave accelerator_type unset")
        # The cluster's admission, on this one node: more cpus or memory than it could hold even
        # empty (times the operator's overcommit) is refused, never left to fail or starve later.
        refuse_oversized(Need.of(spec).resources, {self.host_name: self.capacity()}, self.settings.overcommit,
                         lambda name: f"this node ({name})", dimensions=("cpus", "memory"))

    def capacity(self) -> Resources:
        """What this machine has: its cpus, memory, GPUs and the disk free under the state dir."""
        return Resources(cpus=float(len(os.sched_getaffinity(0)) or os.cpu_count() or 1),
                         memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                         gpus=self.gpus.total, disk_bytes=shutil.disk_usage(self.settings.state_dir).free)

    async def create(self, spec: SandboxSpec, timeout: float | None = None) -> SandboxInfo:
        """Start a sandbox and return once its first command can run; idempotent per sandbox_id.
        (``timeout`` is for cluster placement, which may queue; a node starts at once.)"""
        sid = spec.sandbox_id
        if not usable_id(sid):
            raise BadRequest("sandbox_id must be 1-128 characters, without '/' and not starting with '.'")
        if sid in self._sandboxes:
            return self.get(sid)
        if sid in self._stopped:  # a fresh start under the same id replaces the kept files
            await self.stop(sid)
        task = self._creating.get(sid)
        if task is None:
            if spec.gpus:
                ids = self.gpus.take(spec.gpus, sid)
                spec = spec.model_copy(update={"gpu_ids": ids,
                                               "env": {**spec.env, "CUDA_VISIBLE_DEVICES": self.gpus.visible(ids)}})
            task = self._creating[sid] = asyncio.ensure_future(self._create(spec))
            task.add_done_callback(lambda _: self._creating.pop(sid, None))
        await asyncio.shield(task)
        return self.get(sid)

    async def _create(self, spec: SandboxSpec) -> None:
        started = time.perf_counter()
        try:
            await self._start(spec, started)
        except BaseException:
            self.gpus.release(spec.gpu_ids)
            raise

    async def _start(self, spec: SandboxSpec, started: float) -> None:
        at_boot = spec.egress is not None and self.runtime.egress_at_boot  # a warm one has no namespace for it
        pooled = None if spec.gpu_ids or at_boot else self.pool.take(pool_key(spec))
        if pooled is not None:
            handle, client = pooled
            source = "pool"
        else:
            handle, client = await self._launch(spec.model_copy(update={"sandbox_id": self._runtime_id(spec.sandbox_id)}))
            source = "cold"
        await self._keep(Sandbox(spec.sandbox_id, handle, client, spec, warm=pooled is not None))
        log.info("sandbox %s running (%s, %s start, %.1f ms)", spec.sandbox_id, self.backend_name, source,
                 (time.perf_counter() - started) * 1000)

    @staticmethod
    def _runtime_id(sandbox_id: str) -> str:
        # The agent's socket lives under <state>/sandboxes/<runtime id>/run/ and a Unix socket
        # path has 107 bytes: long ids run under a short name derived from them.
        if len(sandbox_id) <= 24:
            return sandbox_id
        return sandbox_id[:8] + "-" + hashlib.sha256(sandbox_id.encode()).hexdigest()[:15]

    async def _keep(self, sandbox: Sandbox) -> None:
        """Record a sandbox that runs and hold it; one that cannot be recorded is removed."""
        try:
            await self._gate(sandbox)
            self.records.save(sandbox)
        except BaseException:  # e.g. a full disk: a sandbox without its record would be lost
            await self.egress.detach(sandbox.sandbox_id)
            sandbox.client.close()
            await self.runtime.destroy(sandbox.handle)  # all of it before the failure is reported
            raise
        self._hold(sandbox)

    def _egress_backend(self) -> None:
        if not self.runtime.egress:
            raise BadRequest(f"egress policies need a backend with an egress gate ({', '.join(backends_with('egress'))}); "
                             f"this admin runs {self.backend_name}")

    async def _gate(self, sandbox: Sandbox) -> None:
        """A sandbox with an egress policy gets its way out through the gate."""
        if sandbox.spec.egress is not None:
            await self.egress.attach(sandbox.sandbox_id, sandbox.client, sandbox.spec.egress, sandbox.spec.brokered,
                                     netns=sandbox.handle.extra.get("netns"))

    async def update_egress(self, sandbox_id: str, rules: dict, headers: list[dict] | None = None) -> None:
        """A running sandbox's new egress policy (one started without a network gets the gate
        now) and, where ``headers`` is given, its relay's new per-host headers; kept with its
        record, so a restart has them too."""
        self._egress_backend()
        sandbox = self._get(sandbox_id)
        if sandbox.spec.network:
            raise Conflict(f"sandbox {sandbox_id} was started with network=true (the backend's network, "
                           "no gate); start it with an egress policy instead")
        netns = sandbox.handle.extra.get("netns")
        if self.runtime.egress_at_boot and netns is None:
            raise Conflict(f"sandbox {sandbox_id} was started without an egress policy, and a {self.backend_name} "
                           "sandbox's network is fixed when it boots; start it with an egress policy ('none' to "
                           "begin with nothing) to change it later")
        sandbox.spec = sandbox.spec.model_copy(update={"egress": rules})
        # The handle's spec too: a snapshot records it, and a fork or a start from that snapshot
        # must get the policy in force, not the one the sandbox was started with.
        sandbox.handle.spec = sandbox.handle.spec.model_copy(update={"egress": rules})
        if headers is not None:
            brokered = [i for i in sandbox.spec.brokered if "headers" not in i] + list(headers)
            sandbox.spec = sandbox.spec.model_copy(update={"brokered": brokered})
            sandbox.handle.spec = sandbox.handle.spec.model_copy(update={"brokered": brokered})
        if not self.egress.update(sandbox_id, rules):
            await self.egress.attach(sandbox_id, sandbox.client, rules, sandbox.spec.brokered, netns=netns)
        elif headers is not None:
            await self.egress.set_headers(sandbox_id, sandbox.client, headers)
        self.records.save(sandbox)

    async def _launch(self, spec: SandboxSpec, snapshot: Snapshot | None = None) -> tuple[RuntimeHandle, AgentClient]:
        """A new sandbox (from ``snapshot`` where given) with its agent connected, or nothing left."""
        handle = await (self.runtime.create(spec) if snapshot is None else self.runtime.start_from(snapshot, spec))
        try:
            client = await AgentClient.connect(handle.socket_path, handle)
        except BaseException:
            await self.runtime.destroy(handle)
            raise
        return handle, client

    async def _discard(self, handle: RuntimeHandle, client: AgentClient) -> None:
        """A sandbox nobody will use again (deleted, or a warm one dropped): its processes end
        now, the backend may remove its files in the background."""
        client.close()
        await self.runtime.release(handle)

    async def _reattach(self, owner: bool = True) -> None:
        await asyncio.gather(*(self._attach_record(path, owner) for path in self.records.paths()))

    async def _attach_record(self, path: Path, owner: bool = True) -> None:
        """Hold the sandbox of a record file again if its agent answers (``owner``: see ``RecordFiles.attach``)."""
        found = await self.records.attach(path, owner)
        if found is not None:
            sandbox = Sandbox(found.spec.sandbox_id, found.handle, found.client, found.spec, found.warm)
            if owner:
                try:
                    await self._gate(sandbox)
                except Exception as exc:  # noqa: BLE001 - held without a way out rather than lost
                    log.warning("sandbox %s: its egress gate could not be restored: %s", sandbox.sandbox_id, exc)
            self._hold(sandbox)
            if owner:
                self.gpus.claim(found.spec.gpu_ids, found.spec.sandbox_id)

    def _hold(self, sandbox: Sandbox) -> None:
        self._sandboxes[sandbox.sandbox_id] = sandbox
        sandbox.client.on_lost = lambda: self._agent_lost(sandbox)
        sandbox.client.reply_timeout = self.settings.agent_reply_timeout
        sandbox.client.on_notice = lambda meta, body: notify_listeners(self.listeners, sandbox.sandbox_id, meta, body)

    def _agent_lost(self, sandbox: Sandbox) -> None:
        """The agent dropped its connection on its own: the sandbox is dead (its agent was killed,
        crashed or ran out of memory). Tell the admin at once rather than at the next call."""
        if self._sandboxes.get(sandbox.sandbox_id) is not sandbox:
            return  # stopped on purpose meanwhile
        reason = "the sandbox's agent went away (killed, crashed or out of memory); delete the sandbox and start a new one"
        log.warning("sandbox %s: %s", sandbox.sandbox_id, reason)
        for listener in self.listeners:
            asyncio.ensure_future(listener.sandbox_lost(sandbox.sandbox_id, reason))

    async def stop(self, sandbox_id: str, node_id: str | None = None, keep: bool = False) -> bool:
        """End the sandbox. ``keep``: keep its files for ``restart`` where the backend can (returns
        whether it did); otherwise, and for a sandbox already stopped, remove it for good. A stopped
        sandbox holds no GPU (``restart`` takes its GPUs again). ``node_id`` is the cluster's; a
        node's worker is that node."""
        started = time.perf_counter()
        paused = self._sandboxes.get(sandbox_id)
        if paused is not None and self.runtime.paused(paused.handle):
            # A frozen sandbox's processes cannot end (nor an engine stop a paused container): thaw first.
            await self.runtime.unpause(paused.handle)
        sandbox = self._sandboxes.pop(sandbox_id, None)
        await self.egress.detach(sandbox_id)
        if sandbox is None:
            kept = self._stopped.get(sandbox_id)
            if kept is None:
                raise SandboxNotFound(f"no sandbox {sandbox_id!r} on this worker")
            if keep:
                return True
            await self.runtime.destroy(kept[0])
            self._stopped.pop(sandbox_id)
        elif keep and self.runtime.keeps_files:
            sandbox.client.close()
            await self.runtime.suspend(sandbox.handle)
            self.gpus.release(sandbox.spec.gpu_ids)
            # The kept record first: a running record left beside it (a crash) loses to it at re-attach.
            self._stopped[sandbox_id] = (sandbox.handle, sandbox.spec)
            self.records.drop(sandbox_id)
            log.info("sandbox %s stopped, files kept (%.1f ms)", sandbox_id, (time.perf_counter() - started) * 1000)
            return True
        else:
            await self._discard(sandbox.handle, sandbox.client)
            self.gpus.release(sandbox.spec.gpu_ids)
        self.records.drop(sandbox_id)
        log.info("sandbox %s removed (%.1f ms)", sandbox_id, (time.perf_counter() - started) * 1000)
        return False

    async def restart(self, sandbox_id: str, node_id: str | None = None) -> SandboxInfo:
        """Start a stopped sandbox again on its kept files."""
        kept = self._stopped.get(sandbox_id)
        if kept is None or sandbox_id in self._sandboxes:
            raise SandboxNotFound(f"sandbox {sandbox_id!r} has no kept files on this worker to restart from")
        handle, spec = kept
        # Its GPUs again: the same ones (a kept container's devices are fixed when it was made).
        held = sorted({self.gpus.owner[i] for i in spec.gpu_ids if self.gpus.owner.get(i, sandbox_id) != sandbox_id})
        if held:
            raise Conflict(f"sandbox {sandbox_id} cannot restart yet: its GPU(s) "
                           f"{', '.join(map(str, spec.gpu_ids))} are held by {', '.join(held)}")
        self.gpus.claim(spec.gpu_ids, sandbox_id)
        try:
            handle = await self.runtime.resume(handle)
            client = await AgentClient.connect(handle.socket_path, handle)
        except BaseException:
            self.gpus.release(spec.gpu_ids)
            self._stopped[sandbox_id] = (handle, spec)
            raise
        sandbox = Sandbox(sandbox_id, handle, client, spec)
        try:
            await self._gate(sandbox)
        except BaseException:
            client.close()
            await self.runtime.suspend(handle)
            self.gpus.release(spec.gpu_ids)
            raise
        self.records.save(sandbox)
        self._stopped.pop(sandbox_id)  # only once the running record is written
        self._hold(sandbox)
        return self.get(sandbox_id)

    async def commit(self, sandbox_id: str, image_tag: str, node_id: str | None = None) -> str:
        """Save a running or stopped sandbox's filesystem as a Docker image; returns its id."""
        sandbox = self._sandboxes.get(sandbox_id)
        handle = sandbox.handle if sandbox is not None else (self._stopped.get(sandbox_id) or (None,))[0]
        if handle is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r} on this worker")
        try:
            return await self.runtime.commit(handle, image_tag)
        except NotImplementedError as exc:
            raise BadRequest(str(exc)) from None

    async def pause(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Freeze the sandbox's processes in memory; its agent's calls are refused (SandboxPaused)
        until ``unpause``. The record keeps it: a restarted worker holds it paused."""
        sandbox = self._get(sandbox_id)
        await self.runtime.pause(sandbox.handle)  # marks the handle the sandbox's client was made with
        self.records.save(sandbox)

    async def unpause(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Resume a paused sandbox's processes."""
        sandbox = self._get(sandbox_id)
        await self.runtime.unpause(sandbox.handle)
        self.records.save(sandbox)

    # -- snapshots ---------------------------------------------------------------------------


    async def get_snapshot(self, name: str, owner: str | None, node_id: str | None = None) -> Snapshot:
        """The owner's snapshot ``name`` (SnapshotNotFound: none, or another owner's)."""
        return self.runtime.snapshots.get(name, owner_key(owner))

    async def snapshots(self, owner: str | None) -> list[Snapshot]:
        """The owner's snapshots, by name."""
        return self.runtime.snapshots.list(owner_key(owner))

    async def delete_snapshot(self, name: str, owner: str | None, node_id: str | None = None) -> None:
        """Remove the owner's snapshot for good; sandboxes started from it run on."""
        await self.runtime.delete_snapshot(await self.get_snapshot(name, owner))

    async def snapshot(self, sandbox_id: str, name: str, owner: str | None, mode: str = "filesystem",
                       node_id: str | None = None, early: bool = False) -> Snapshot:
        """Save the running (or paused) sandbox's state as the owner's snapshot ``name``.
        ``early``: return once the snapshot is whole, while the sandbox may still be on its way
        back (``back`` waits for that)."""
        sandbox = self._get(sandbox_id)
        if mode != "full" or not self.runtime.full_snapshots:
            return await self.runtime.snapshot(sandbox.handle, name, owner_key(owner), mode)
        # A full snapshot checkpoints the sandbox and restores it in place: its agent closes every
        # connection first, ours included. That close is not the sandbox dying (``_agent_lost``),
        # and the sandbox goes on with a new connection.
        sandbox.client.close()
        try:
            snap, source_back = await self.runtime.begin_snapshot(sandbox.handle, name, owner_key(owner), mode)
        except BaseException:
            await self._reconnect(sandbox)
            raise
        returning = asyncio.ensure_future(self._come_back(sandbox, source_back))
        self._returning[sandbox_id] = returning
        returning.add_done_callback(lambda f: self._came_back(sandbox_id, f))
        if not early:
            await self.back(sandbox_id)
        return snap

    async def back(self, sandbox_id: str, node_id: str | None = None) -> None:
        """Wait until the sandbox is back from an ``early`` snapshot (at once when none is under
        way); raises what its way back failed with."""
        returning = self._returning.get(sandbox_id)
        if returning is None:
            return
        try:
            await asyncio.shield(returning)
        finally:
            if returning.done() and self._returning.get(sandbox_id) is returning:
                del self._returning[sandbox_id]  # a failure is told once

    async def _come_back(self, sandbox: Sandbox, source_back) -> None:
        """The rest of a full snapshot: the source restored from the image (where the backend does
        that), then this worker's connection to its agent made again."""
        try:
            if source_back is not None:
                await source_back
        finally:
            await self._reconnect(sandbox)

    def _came_back(self, sandbox_id: str, returning: asyncio.Future) -> None:
        """Done: forgotten if it went well; a failure stays for ``back`` to raise, and is logged
        here already (no one may be waiting)."""
        if not returning.cancelled() and returning.exception() is not None:
            log.error("sandbox %s: its way back from a full snapshot failed: %r", sandbox_id, returning.exception())
        elif self._returning.get(sandbox_id) is returning:
            del self._returning[sandbox_id]

    async def _reconnect(self, sandbox: Sandbox) -> None:
        sandbox.client = await AgentClient.connect(sandbox.handle.socket_path, sandbox.handle, paused_ok=True)
        self.records.save(sandbox)
        self._hold(sandbox)

    async def start_from(self, name: str, owner: str | None, spec: SandboxSpec,
                         node_id: str | None = None) -> SandboxInfo:
        """Start the sandbox ``spec.sandbox_id`` from the owner's snapshot ``name`` (its files, and
        with ``full`` its processes). ``spec``: the new sandbox's; its image is the snapshot's."""
        snap = await self.get_snapshot(name, owner)
        sid = spec.sandbox_id
        if not usable_id(sid):
            raise BadRequest("sandbox_id must be 1-128 characters, without '/' and not starting with '.'")
        if sid in self._sandboxes:
            return self.get(sid)
        started = time.perf_counter()
        handle, client = await self._launch(
            spec.model_copy(update={"sandbox_id": self._runtime_id(sid), "gpu_ids": []}), snap)
        await self._keep(Sandbox(sid, handle, client, spec.model_copy(update={"gpu_ids": []})))
        log.info("sandbox %s running from snapshot %s (%s, %s, %.1f ms)", sid, name, snap.mode, self.backend_name,
                 (time.perf_counter() - started) * 1000)
        return self.get(sid)

    async def restore(self, sandbox_id: str, name: str, owner: str | None, node_id: str | None = None) -> SandboxInfo:
        """Roll the running (or paused) sandbox back to the owner's snapshot ``name`` in place: it
        keeps its id (so its tokens, records, ports and the callers' connections to the admin),
        its limits and its GPUs; its files become the snapshot's (``full``: its processes too).
        The new state runs before the old one ends, so a restore that fails leaves the sandbox as
        it was; calls still running in the old state end with AgentGone saying why."""
        old = self._get(sandbox_id)
        snap = await self.get_snapshot(name, owner)
        if snap.backend != self.backend_name:
            raise BadRequest(f"snapshot {name!r} was taken on the {snap.backend} backend; sandbox {sandbox_id} runs "
                             f"on {self.backend_name}")
        started = time.perf_counter()
        if await self._roll_back(old, snap):
            log.info("sandbox %s restored to snapshot %s in place (%s, %.1f ms)", sandbox_id, name, self.backend_name,
                     (time.perf_counter() - started) * 1000)
            return self.get(sandbox_id)
        # A runtime id of its own for the new state: the old one runs until the new one is up, and
        # two sandboxes of one runtime id would share a directory, a cgroup and a container name.
        generation = int(old.handle.extra.get("generation", "0")) + 1
        runtime_id = self._runtime_id(f"{sandbox_id}~{generation}")
        handle, client = await self._launch(
            old.spec.model_copy(update={"sandbox_id": runtime_id, "image": snap.spec.image}), snap)
        handle.extra["generation"] = str(generation)
        new = Sandbox(sandbox_id, handle, client, old.spec.model_copy(update={"image": snap.spec.image}), old.warm)
        try:
            if new.spec.egress is not None:  # the gate moves to the new state's network namespace
                await self.egress.detach(sandbox_id)
                await self._gate(new)
            self.records.save(new)
        except BaseException:
            await self.egress.detach(sandbox_id)
            await self._discard(handle, client)
            if old.spec.egress is not None:
                with contextlib.suppress(Exception):  # the old state keeps its way out, as it was
                    await self._gate(old)
            raise
        self._hold(new)  # from here the old client's loss is no longer the sandbox's
        old.client.close(f"sandbox {sandbox_id} was restored to snapshot {name!r} while this call ran")
        if self.runtime.paused(old.handle):
            await self.runtime.unpause(old.handle)
        await self.runtime.release(old.handle)
        log.info("sandbox %s restored to snapshot %s (%s, %s, %.1f ms)", sandbox_id, name, snap.mode,
                 self.backend_name, (time.perf_counter() - started) * 1000)
        return self.get(sandbox_id)

    async def _roll_back(self, sandbox: Sandbox, snap) -> bool:
        """Restore in place where the backend can: the sandbox's processes end (the calls still
        waiting on them fail with AgentGone saying why), then its agent rewrites only the files
        that differ from the snapshot's. False where the backend cannot, or the rewrite failed: the
        caller then starts the snapshot anew, which also replaces anything half rewritten."""
        if self.runtime.paused(sandbox.handle) or not self.runtime.rolls_back(sandbox.handle, snap):
            return False
        sandbox.client.fail_pending(f"sandbox {sandbox.sandbox_id} was restored to snapshot {snap.name!r} "
                                    "while this call ran")
        t0 = time.perf_counter()
        await sandbox.client.call("reset.end")
        t1 = time.perf_counter()
        plan = await self.runtime.rollback_plan(sandbox.handle, snap)
        if plan is None:
            return False
        t2, passed = time.perf_counter(), len(plan.fds)
        try:
            result, _ = await sandbox.client.call_passing("reset.apply", {"ops": plan.ops}, bytes(plan.body), plan.fds)
        finally:
            plan.close()
        log.info("sandbox %s: in-place restore of %d changes, %d bytes (%d files passed as descriptors): processes "
                 "ended in %.1f ms, planned in %.1f ms, applied in %.1f ms", sandbox.sandbox_id, len(plan.ops),
                 plan.bytes, passed, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3)
        if result.get("failed"):
            log.warning("sandbox %s: %d changes of the in-place restore failed (%s); starting snapshot %s anew",
                        sandbox.sandbox_id, len(result["failed"]), "; ".join(result["failed"][:3]), snap.name)
            return False
        return True

    def fork(self, sandbox_id: str, owner: str | None, specs: list[SandboxSpec], mode: str = "filesystem",
             name: str | None = None, node_id: str | None = None):
        """Start ``len(specs)`` sandboxes from a fresh snapshot of ``sandbox_id`` (``fork_children``)."""
        return fork_children(self, sandbox_id, owner, specs, mode, name, node_id)

    async def disk_usage(self, sandbox_id: str, node_id: str | None = None) -> int | None:
        """Bytes the sandbox has written to its writable layer (None where the backend cannot tell)."""
        return await self.runtime.disk_usage(self._get(sandbox_id).handle)

    def capabilities(self, sandbox_id: str | None = None, node_id: str | None = None) -> list[frozenset[str]]:
        """What the backend that runs this worker's sandboxes can do (``Runtime.capabilities``)."""
        return [self.runtime.capabilities()]

    def node_backends(self, sandbox_id: str | None = None, node_id: str | None = None) -> tuple[list[str], str]:
        """The backend that runs this worker's sandboxes, and where (nothing to name: the admin's
        own); ``ClusterWorker.node_backends`` names a node's."""
        return [self.backend_name], ""

    def node_live(self, node_id: str) -> bool:
        """A single-node worker has no named nodes: a record naming one is from a cluster."""
        return False

    def status(self) -> list[dict]:
        """This machine as the one node of ``/cluster/status``."""
        specs = self.specs()
        reserved = Resources(cpus=sum(s.cpus or 0 for s in specs), memory_bytes=sum(s.memory_bytes or 0 for s in specs),
                             gpus=sum(len(s.gpu_ids) for s in specs))
        capacity = self.capacity()
        return [{"name": "local", "live": True, "host_name": socket.gethostname(), "ip": "127.0.0.1",
                 "backend": self.backend_name, "labels": self.settings.node_labels, "capacity": capacity,
                 "reserved": reserved, "free": capacity - reserved, "loadavg": os.getloadavg()[0],
                 "sandboxes": len(specs)}]

    def stopped_ids(self) -> list[str]:
        """The ids of the stopped sandboxes whose files this worker keeps for a restart."""
        return list(self._stopped)

    # -- lookups ---------------------------------------------------------------------------

    def _get(self, sandbox_id: str) -> Sandbox:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}; it was never started here or has been stopped")
        return sandbox

    async def connect(self, sandbox_id: str, node_id: str | None = None) -> AgentClient:
        """The agent client (the interface the admin uses for local and remote workers alike)."""
        return self.agent(sandbox_id)

    def agent(self, sandbox_id: str) -> AgentClient:
        """The connection to a running sandbox's agent; ``AgentGone`` once it has gone away."""
        sandbox = self._get(sandbox_id)
        if sandbox.client.closed:
            raise AgentGone(f"sandbox {sandbox_id!r} is not running any more (its agent went away)")
        return sandbox.client

    def get(self, sandbox_id: str) -> SandboxInfo:
        """One running sandbox as ``SandboxInfo``."""
        s = self._get(sandbox_id)
        return SandboxInfo(
            sandbox_id=s.sandbox_id, backend=self.backend_name,
            state="failed" if s.client.closed else "paused" if s.handle.extra.get("paused") else "running",
            spec=s.spec, created_at=s.handle.created_at, host_name=self.host_name, runtime_id=s.handle.runtime_id,
            warm=s.warm,
        )

    def specs(self) -> list[SandboxSpec]:
        """The specs of every running sandbox (what the node has promised)."""
        return [s.spec for s in self._sandboxes.values()]

    def has(self, sandbox_id: str) -> bool:
        """Whether this worker runs ``sandbox_id``."""
        return sandbox_id in self._sandboxes

    def list(self) -> list[SandboxInfo]:
        """Every running sandbox as ``SandboxInfo``."""
        return [self.get(sid) for sid in list(self._sandboxes)]

    def run_dir(self, sandbox_id: str) -> str:
        """The host directory shared with the sandbox (agent socket, env host socket)."""
        return self.handle(sandbox_id).run_dir

    def handle(self, sandbox_id: str) -> RuntimeHandle:
        """The runtime's handle of a running sandbox."""
        return self._get(sandbox_id).handle

    async def stats(self, sandbox_id: str, node_id: str | None = None) -> ResourceStats:
        """A sandbox's resource use, as its backend measures it."""
        return await self.runtime.stats(self._get(sandbox_id).handle)

    async def alive(self, sandbox_id: str) -> bool:
        """Whether the sandbox's agent still answers and the backend still runs it."""
        sandbox = self._get(sandbox_id)
        return not sandbox.client.closed and await self.runtime.alive(sandbox.handle)

    def _known_runtime_ids(self) -> set[str]:
        return {s.handle.sandbox_id for s in self._sandboxes.values()} | {h.sandbox_id for h, _ in self._stopped.values()}
