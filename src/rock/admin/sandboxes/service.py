"""Sandbox lifecycle in the admin: records, the state machine, idempotent create.

Every record is in the store (it survives restarts and is shared); the records of sandboxes
that run (``HELD`` states) are also in memory, where the hot path reads them without I/O, and
so are the last few hundred ended ones a caller touched. Ended sandboxes are read from the
store when asked for (status, listing, history, the UI), so a long-running admin holds only
what is live. The worker owns the actual sandboxes; this class keeps the two in step.

``Sandboxes`` is composed, not mixed: the records it keeps are a ``HeldRecords`` (``held``:
memory, the store, what other processes write; ``rock.admin.sandboxes.held``), what concerns snapshots only
is a ``SnapshotCatalog`` (``snapshot_catalog``; ``rock.admin.sandboxes.snapshots``, which says why pause, resume,
snapshot and fork are this class's own methods). The lookups and snapshot reads every door makes
(``lookup``, ``get``, ``snapshots``, ``delete_snapshot`` ...) are this class's methods, which hand
them to those parts; what concerns the records only (``live``, ``holds``, ``page``, ``counts``,
``written``, ``load``) callers ask of ``held`` itself. The idle
TTL and the reaper lease are a ``Reaper`` (``reaper``; ``rock.admin.sandboxes.reaper``), which acts through
this class's public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable

from rock.actions.sandbox import SandboxStartRequest, parse_memory
from rock.actions.snapshots import MAX_FORK
from rock.admin.sandboxes.egress import IAM_KEY, spec_egress, spec_secrets
from rock.admin.secrets import SecretVault
from rock.admin.sandboxes import start_checks
from rock.admin.sandboxes.admission import Admission
from rock.admin.commands import CommandLog
from rock.admin.events import Events
from rock.admin.sandboxes.held import HeldRecords
from rock.admin.sandboxes.nodes import node_back, node_lost
from rock.admin.sandboxes.snapshots import SnapshotCatalog
from rock.admin.sandboxes.reaper import Reaper
from rock.admin.volumes import Volumes
from rock.admin.store import HELD, LIVE, TRANSITIONS, SandboxRecord, Store
from rock.config import Settings
from rock.errors import (BadRequest, Conflict, QuotaExceeded, Refused, RockError, SandboxNotFound, SandboxNotRunning,
                         SandboxPaused, SandboxStartError, SnapshotNotFound)
from rock.runtime.base import SandboxSpec
from rock.runtime.host_policy import host_network_refused, host_path_refused, is_host_path
from rock.runtime.gpus import wanted as gpus_wanted
from rock.runtime.snapshots import Snapshot
from rock.worker.protocol import WorkerListener, WorkerOps

log = logging.getLogger("rock.admin")
# A door's extra_spec key: what the sandbox's agent readies at boot (SandboxSpec.prewarm), for a
# door whose first command is not a session's (E2B's are processes of their own).
PREWARM_KEY = "prewarm"


class Sandboxes(WorkerListener):
    """The admin's sandbox service: records and their state machine over the worker's sandboxes;
    every front door starts, stops and looks up sandboxes through it."""

    def __init__(self, settings: Settings, worker: WorkerOps, store: Store):
        self._starting: dict[str, asyncio.Task] = {}  # creates in flight, by sandbox id
        self.settings = settings
        self.worker = worker
        self.store = store
        # The records and what other processes write of them (rock.admin.sandboxes.held); this service
        # changes their states and queues their writes.
        self.held = HeldRecords(settings, store, locked=self._locked, starting=self.starting,
                                forget=self._forget, landed=self._landed)
        self.records = self.held.records  # the live ones, by id: the hot path reads them (one dict, never replaced)
        self.deadline = lambda record: None  # when a stopped record's next timed transition is (lifecycle sets it)
        self._used: dict[str, float] = {}  # sandbox_id -> last use, not yet written to the store
        self._locks: dict[str, asyncio.Lock] = {}
        self._saving: set[asyncio.Future] = set()
        self.events = Events()  # state changes and start results, for the UI and the metrics
        self.secrets = SecretVault(Path(settings.state_dir) / "secrets.json")  # the tenants' secrets (write-only values)
        self.commands = CommandLog()
        # What concerns snapshots only (rock.admin.sandboxes.snapshots).
        self.snapshot_catalog = SnapshotCatalog(worker, self._save_soon)
        self.events.subscribe(self.snapshot_catalog.fork_child_gone)
        # Tenants' volumes (rock.admin.volumes); a start's mounts resolve through it.
        self.volumes = Volumes(settings.state_dir, self.records, LIVE,
                               os.path.dirname(os.path.dirname(settings.host_python)),
                               local=not (settings.cluster or settings.simulated_cluster))
        self.reaper = Reaper(self)  # idle TTLs and the reaper lease (rock.admin.sandboxes.reaper)
        # Whether a start may happen: every door's start, fork and restart asks it (rock.admin.sandboxes.admission).
        self.admission = Admission(settings, worker)
        self.events.subscribe(self.admission.on_event)
        worker.listeners.append(self)

    # -- startup / shutdown ------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Make the records agree with what the worker actually runs (after a restart)."""
        known = {info.sandbox_id: info for info in self.worker.list()}
        now = time.time()
        for record in (await self.store.query(states=HELD))[0]:
            self.records[record.sandbox_id] = record
            info = known.get(record.sandbox_id)
            alive = info is not None and info.state in ("running", "paused")
            if record.state in LIVE and alive:
                if record.state == "pending":
                    await self.transition(record, "running", "reattached")
                # a paused record stays paused (a cluster node reports its sandboxes only as running;
                # resuming one that runs already is a no-op that fixes the record)
                self.admission.hold(record.owner, record.sandbox_id, *self.cost_of(record))
                # Time the admin was down does not count as idle: nobody could use the sandbox.
                record.last_used_at = now
            elif record.state in LIVE and record.node_id and not self.worker.node_live(record.node_id):
                record.failure_reason = f"node {record.node_id} was not reachable when the admin restarted"
                await self.transition(record, "lost", "node_lost", record.failure_reason)
            elif record.state in LIVE:
                record.failure_reason = ("its start was cut short by an admin restart" if record.state == "pending"
                                         else "the sandbox was gone when the admin restarted")
                await self.transition(record, "failed", "lost", record.failure_reason)
        for sandbox_id, info in known.items():
            record = self.records.get(sandbox_id)
            if record is None or record.state not in LIVE:
                log.warning("stopping sandbox %s: it has no live record (orphan)", sandbox_id)
                await self.quiet_stop(sandbox_id)
        for sandbox_id in self.worker.stopped_ids():  # kept files whose record no longer wants them
            record = self.known(sandbox_id) or await self.store.get(sandbox_id)
            if record is None or record.state not in ("stopped", "archiving"):
                await self.quiet_stop(sandbox_id, record.node_id if record else None)

    def start_reaper(self) -> None:
        self.reaper.start()

    @property
    def reaping(self) -> bool:
        """This process holds the reaper lease (with a shared store, only it acts on timers)."""
        return self.reaper.reaping

    async def close(self) -> None:
        await self.reaper.close()
        await self.held.close()
        for task in list(self._starting.values()):
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._saving, return_exceptions=True)
        await self.flush()
        await asyncio.to_thread(self.volumes.close)

    # -- what the records ask of the service (HeldRecords' callbacks) ---------------------------

    def _locked(self, sandbox_id: str) -> bool:
        lock = self._locks.get(sandbox_id)
        return lock is not None and lock.locked()

    def _forget(self, sandbox_id: str) -> None:
        self._locks.pop(sandbox_id, None)
        self.commands.forget(sandbox_id)

    async def _landed(self) -> None:
        await asyncio.gather(*list(self._saving), return_exceptions=True)

    def _save_soon(self, saved: asyncio.Future) -> None:
        """Let a queued write finish without the caller waiting (a failure is logged by ``_write``,
        which made it). A crash before it lands leaves the older state on disk, which
        ``reconcile`` corrects."""
        self._saving.add(saved)
        saved.add_done_callback(self._saving.discard)

    async def flush(self) -> None:
        used, self._used = self._used, {}
        await self.store.flush_last_used(used)

    # -- lookups (hot path): what every front door asks of the records -----------------------

    def known(self, sandbox_id: str) -> SandboxRecord | None:
        """The record if it is in memory (live, or an ended one used lately)."""
        return self.held.known(sandbox_id)

    def get(self, sandbox_id: str, owner: str | None, include_deleted: bool = True) -> SandboxRecord:
        """The caller's record from memory only (``lookup`` also reads the store); another owner's
        is a missing one (``SandboxNotFound``)."""
        return self.held.get(sandbox_id, owner, include_deleted)

    async def lookup(self, sandbox_id: str, owner: str | None, include_deleted: bool = True) -> SandboxRecord:
        """``get``, reading the store for a record that is not in memory (ended, or another process's)."""
        return await self.held.lookup(sandbox_id, owner, include_deleted)

    async def lookup_many(self, sandbox_ids: list[str], owner: str | None) -> list[SandboxRecord]:
        """``lookup`` of each id, in one store query for those not in memory; missing ones and other
        namespaces' are left out."""
        return await self.held.lookup_many(sandbox_ids, owner)

    def save(self, record: SandboxRecord) -> None:
        """Persist a changed field of a record (no state change), without waiting."""
        self._save_soon(self.write_record(record, None, None))

    def touch(self, record: SandboxRecord) -> None:
        now = time.time()
        record.last_used_at = now
        self._used[record.sandbox_id] = now

    async def agent(self, sandbox_id: str, owner: str | None):
        """The agent client of a running sandbox the caller owns; counts as a use (TTL refresh)."""
        record = self.records.get(sandbox_id)
        if record is None or record.owner != owner:
            record = await self.lookup(sandbox_id, owner)
        if record.state == "paused":
            await self._paused_call(record)  # resumes it (auto_resume) or refuses: 409
        if record.state != "running":
            task = self._starting.get(sandbox_id)
            if task is not None:  # still starting: the command waits for it instead of failing
                await asyncio.shield(task)
            elif self.store.shared or self.settings.role == "proxy":
                # Another process changed it since our last refresh (its record object, if ours was dropped).
                record = await self.held.reread(sandbox_id) or record
            if record.state != "running":
                raise SandboxNotRunning(f"sandbox {sandbox_id} is {record.state}" + (
                    f": {record.failure_reason}" if record.failure_reason else ""))
        self.touch(record)
        return await self.worker.connect(sandbox_id, record.node_id)

    # -- create ------------------------------------------------------------------------------

    def starting(self, sandbox_id: str) -> bool:
        """Whether this process is creating the sandbox now (its create task has not ended)."""
        return sandbox_id in self._starting

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        """The sandbox's lock: its record changes only under it (here, and in ``rock.admin.sandboxes.lifecycle``)."""
        lock = self._locks.get(sandbox_id)
        if lock is None:
            lock = self._locks[sandbox_id] = asyncio.Lock()
        return lock

    def _host_network_only(self) -> bool:
        """Whether every backend a start could land on gives ``network=true`` the host's network."""
        caps = self.worker.capabilities()
        return bool(caps) and all("host_network" in c for c in caps)

    async def start(self, req: SandboxStartRequest, owner: str | None, meta: dict, wait: bool,
                    extra_spec: dict | None = None) -> SandboxRecord:
        """``extra_spec``: what a front door keeps with the record (E2B's metadata, its token)."""
        sandbox_id = req.sandbox_id or uuid.uuid4().hex
        if is_host_path(req.image) and not self.settings.allow_host_paths:  # every path to a sandbox passes here
            raise host_path_refused(req.image)
        if req.network and not self.settings.allow_host_network and self._host_network_only():
            raise host_network_refused("/".join(self.worker.node_backends()[0]))
        # What no node could ever give is refused before anything is recorded; the create uses this spec.
        draft = SandboxRecord(sandbox_id=sandbox_id, owner=owner, image=req.image, namespace=meta.get("namespace"),
                              spec=dict(extra_spec or {}))  # a door's extras (E2B's iam tokens) shape the spec too
        if req.snapshot:  # its image and limits are the snapshot's (rock.admin.sandboxes.snapshots)
            req, spec = await self.snapshot_catalog.from_snapshot(req, draft)
            spec.volume_binds = self.volumes.binds(owner, [m.model_dump() for m in req.volumes or ()])
        else:
            spec = self.spec_for(draft, req)
        try:
            self.worker.check(spec)
        except Refused as exc:  # a cluster with no room now: counted with this node's refusals
            self.admission.count(exc)
            raise
        async with self.lock(sandbox_id):
            record = self.known(sandbox_id)
            if record is None and req.sandbox_id:  # a caller's id may name an ended sandbox
                record = await self.store.get(sandbox_id)
            if record is not None and record.owner != owner:
                raise Conflict(f"sandbox id {sandbox_id} is already taken")
            if record is None or record.state not in LIVE:
                self.admission.admit(owner, [(sandbox_id, *self.admission.cost(spec.cpus, spec.memory_bytes))])
                record = self._new_record(sandbox_id, req, owner, meta, record, extra_spec)
                self._starting[sandbox_id] = asyncio.create_task(self._create(record, req, spec), name=f"create-{sandbox_id}")
            # else: a caller-chosen id that is pending or running: create is idempotent
        task = self._starting.get(sandbox_id)
        if wait and task is not None:
            failure = await asyncio.shield(task)
            if isinstance(failure, SnapshotNotFound):  # deleted after the check above: absent, a 404
                raise SnapshotNotFound(f"sandbox {sandbox_id} did not start: {failure.message}")
            if isinstance(failure, Refused):  # a cluster's room taken by a start placed meanwhile: its limit named
                raise type(failure)(f"sandbox {sandbox_id} did not start: {failure.message}", limit=failure.limit,
                                    retry_after=failure.retry_after)
        if wait and record.state == "failed":
            raise SandboxStartError(f"sandbox {sandbox_id} failed to start: {record.failure_reason}")
        return record

    def _new_record(self, sandbox_id: str, req: SandboxStartRequest, owner: str | None, meta: dict,
                    old: SandboxRecord | None, extra_spec: dict | None = None) -> SandboxRecord:
        ttl = req.ttl_seconds()
        record = SandboxRecord(
            sandbox_id=sandbox_id, owner=owner, state="pending",
            namespace=meta.get("namespace"), user_id=meta.get("user_id"),
            experiment_id=meta.get("experiment_id"), cluster=meta.get("cluster"),
            image=req.image or self.settings.default_image,
            cpus=req.cpus, memory=req.memory,
            auto_clear_seconds=self.settings.default_auto_clear_seconds if ttl is None else ttl,
            spec={**req.model_dump(exclude_none=True, exclude={"wait"}), **(extra_spec or {})},
        )
        self.held.place(record)
        event, from_state = ("create", None) if old is None else ("recreate", old.state)
        # Written while the sandbox starts: a crash before "running" is on disk is a pending
        # record with a live sandbox, which reconcile marks running after the restart.
        self._save_soon(self.write_record(record, from_state, event))
        self.events.emit("state", record, from_state=from_state, event=event)
        return record

    def cost_of(self, record: SandboxRecord) -> tuple[float, int]:
        """What ``record``'s sandbox takes from its node (``Admission.cost``), from the limits it was asked with."""
        return self.admission.cost(record.cpus, parse_memory(record.memory))

    def spec_for(self, record: SandboxRecord, req: SandboxStartRequest) -> SandboxSpec:
        """What the worker is asked to start for ``record``: the request's limits, image and
        placement, with the owner's labels (a restart asks again with the request it kept)."""
        labels = {"rock.owner": record.owner or "", "rock.namespace": record.namespace or ""}
        selector = dict(req.node_selector or {})
        if req.accelerator_type:
            selector["accelerator_type"] = req.accelerator_type
        # placeholders only, never values
        brokered, secret_env = spec_secrets(self.secrets, record.owner, req, record.spec.get(IAM_KEY))
        return SandboxSpec(
            sandbox_id=record.sandbox_id, image=record.image or self.settings.default_image,
            memory_bytes=parse_memory(req.memory), cpus=req.limit_cpus or req.cpus,
            pids_limit=self.settings.pids_limit, network=req.network, env={**(req.env or {}), **secret_env},
            labels=labels, brokered=brokered,
            gpus=gpus_wanted(req.num_gpus), disk_bytes=parse_memory(req.disk), node_selector=selector,
            egress=spec_egress(req.network, req.egress),  # a bad policy is refused before anything starts
            volume_binds=self.volumes.binds(record.owner, [m.model_dump() for m in req.volumes or ()]),
            prewarm=record.spec.get(PREWARM_KEY) or "session",
            **start_checks.spec_extras(req),
        )

    async def _create(self, record: SandboxRecord, req: SandboxStartRequest, spec: SandboxSpec) -> Exception | None:
        """Start the recorded sandbox; returns why it failed (also the record's reason), or None."""
        timeout = req.startup_timeout or self.settings.default_startup_timeout
        began, timed_out = time.perf_counter(), False
        try:
            try:
                if sys.version_info >= (3, 11):  # without the task per create that wait_for makes
                    async with asyncio.timeout(timeout):
                        info = await self._launch(record, req, spec, timeout)
                else:  # pragma: no cover - Python 3.10
                    info = await asyncio.wait_for(self._launch(record, req, spec, timeout), timeout)
            except asyncio.TimeoutError:
                timed_out = True
                await self.quiet_stop(record.sandbox_id)
                raise SandboxStartError(f"not ready within startup_timeout={timeout:g}s") from None
            create_s = time.perf_counter() - began
            record.node_id = info.node_id
            if record.state != "pending":  # stopped while starting
                await self.quiet_stop(record.sandbox_id, record.node_id)
                return
            record.backend, record.host_name, record.host_ip = info.backend, info.host_name, info.host_ip
            record.started_at = record.last_used_at = time.time()
            await self._settle(self._change(record, "running", "started"))
            self.events.emit("started", record, create_s=create_s, warm=info.warm)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the record's reason
            reason = exc.message if isinstance(exc, RockError) and exc.message else f"{type(exc).__name__}: {exc}"
            log.warning("sandbox %s failed to start: %s", record.sandbox_id, reason)
            if isinstance(exc, Refused):  # a cluster's placement found no room: counted with the refusals
                self.admission.count(exc)
            if record.state == "pending":
                record.failure_reason = reason
                await self.transition(record, "failed", "start_failed", reason)
                # a bounded label: the error's class, never its text
                kind = "timeout" if timed_out else type(exc).__name__ if isinstance(exc, RockError) else "internal"
                self.events.emit("start_failed", record, reason_kind=kind)
            return exc
        finally:
            self._starting.pop(record.sandbox_id, None)

    def _launch(self, record: SandboxRecord, req: SandboxStartRequest, spec: SandboxSpec, timeout: float):
        if req.snapshot:
            return self.worker.start_from(req.snapshot, record.owner, spec)
        return self.worker.create(spec, timeout=timeout)

    # -- stop / delete -----------------------------------------------------------------------

    async def stop(self, sandbox_id: str, owner: str | None, event: str = "stop") -> SandboxRecord:
        return (await self._stop(sandbox_id, owner, event))[0]

    async def _stop(self, sandbox_id: str, owner: str | None, event: str) -> tuple[SandboxRecord, bool]:
        """The record, and whether the worker removed the sandbox for good (a delete's stop)."""
        record = await self.lookup(sandbox_id, owner)
        removed = False
        async with self.lock(sandbox_id):
            if record.state in LIVE or record.state == "lost":
                was_pending = record.state == "pending"
                record.stopped_at = time.time()
                await self._settle(self._change(record, "stopped", event))
                if not was_pending:  # ROCK's stop keeps the files (restart); delete removes them
                    await self.quiet_stop(sandbox_id, record.node_id, keep=event != "delete")
                    removed = event == "delete"
                # a pending create sees the new state and stops what it started
        return record, removed

    async def delete(self, sandbox_id: str, owner: str | None) -> SandboxRecord:
        record, removed = await self._stop(sandbox_id, owner, event="delete")
        async with self.lock(sandbox_id):
            if record.state != "deleted":
                if not removed:
                    await self.quiet_stop(sandbox_id, record.node_id)  # the files a stop kept
                record.deleted_at = time.time()
                await self._settle(self._change(record, "deleted", "delete"))
        return record

    # -- the caller's snapshots (the catalog: rock.admin.sandboxes.snapshots) ------------------

    async def snapshots(self, owner: str | None) -> list[Snapshot]:
        """The owner's snapshots (no other owner's), by name."""
        return await self.snapshot_catalog.snapshots(owner)

    async def get_snapshot(self, name: str, owner: str | None) -> Snapshot:
        """One of the owner's snapshots by name (``SnapshotNotFound`` otherwise)."""
        return await self.snapshot_catalog.get_snapshot(name, owner)

    async def delete_snapshot(self, name: str, owner: str | None) -> None:
        """Delete the owner's snapshot; the sandboxes started from it run on."""
        await self.snapshot_catalog.delete_snapshot(name, owner)

    def check_mode(self, mode: str, sandbox_id: str | None = None, node_id: str | None = None) -> None:
        """A 400 for a snapshot mode the backend of ``sandbox_id`` cannot take (without one: no
        backend of this admin can)."""
        self.snapshot_catalog.check_mode(mode, sandbox_id, node_id)

    # -- pause, resume, snapshot, fork: transitions of the state machine (rules: rock.admin.sandboxes.snapshots) --

    async def pause(self, sandbox_id: str, owner: str | None, event: str = "pause") -> SandboxRecord:
        """Freeze the sandbox's processes in memory (no CPU) until ``resume``; idempotent."""
        await self._wait_started(sandbox_id)
        return await self._flip(sandbox_id, owner, True, event)

    async def resume(self, sandbox_id: str, owner: str | None, event: str = "resume") -> SandboxRecord:
        """Let a paused sandbox run on where it stopped; idempotent on a running one. Its idle time
        starts afresh (paused time does not count)."""
        return await self._flip(sandbox_id, owner, False, event)

    async def _flip(self, sandbox_id: str, owner: str | None, pause: bool, event: str) -> SandboxRecord:
        """running -> paused (``pause``) or paused -> running; already there: nothing to do."""
        record = await self.lookup(sandbox_id, owner)
        source, target = ("running", "paused") if pause else ("paused", "running")
        async with self.lock(sandbox_id):
            if record.state == target:
                return record
            if record.state != source:
                raise Conflict(f"sandbox {sandbox_id} is {record.state}; only a {source} sandbox can be "
                               f"{'paused' if pause else 'resumed'}")
            began = time.perf_counter()
            await (self.worker.pause if pause else self.worker.unpause)(sandbox_id, record.node_id)
            if pause:
                record.spec = {**record.spec, "paused_at": time.time()}
            else:
                record.spec = {k: v for k, v in record.spec.items() if k != "paused_at"}
                self.touch(record)
            await self._settle(self._change(record, target, event))
        self.events.emit("paused" if pause else "resumed", record, seconds=time.perf_counter() - began)
        return record

    async def _paused_call(self, record: SandboxRecord) -> None:
        """A call reached a paused sandbox: resume it (``auto_resume``) or refuse with 409."""
        if not record.spec.get("auto_resume") or self.settings.role == "proxy":  # a proxy changes no state
            raise SandboxPaused(f"sandbox {record.sandbox_id} is paused: resume it first")
        await self.resume(record.sandbox_id, record.owner, event="auto_resume")

    async def _wait_started(self, sandbox_id: str) -> None:
        task = self._starting.get(sandbox_id)
        if task is not None:
            await asyncio.shield(task)

    @contextlib.asynccontextmanager
    async def _running_or_paused(self, record: SandboxRecord, done: str) -> AsyncIterator[None]:
        """Once its start has ended, the sandbox held under its lock while it is running or paused;
        else a Conflict that says it cannot be ``done``."""
        await self._wait_started(record.sandbox_id)
        async with self.lock(record.sandbox_id):
            if record.state not in ("running", "paused"):
                raise Conflict(f"sandbox {record.sandbox_id} is {record.state}; only a running or paused sandbox "
                               f"can be {done}")
            yield

    async def snapshot(self, sandbox_id: str, owner: str | None, name: str | None = None,
                       mode: str = "filesystem", counted: bool = True,
                       then: Callable[[Snapshot], None] | None = None) -> Snapshot:
        """Save the running or paused sandbox's state as a snapshot of ``owner``; the sandbox runs
        on (it is frozen only while its state is taken). The snapshot outlives the sandbox.
        ``counted``: it counts against the owner's snapshot quota (a fork's own, deleted once its
        children run, does not). ``then``: called with the snapshot as soon as it is whole and
        within the quota, while the sandbox may still be on its way back (a fork starts its
        children there); this returns once the sandbox is back."""
        record = await self.lookup(sandbox_id, owner)
        self.check_mode(mode, sandbox_id, record.node_id)
        quota = self.admission.quota(owner) if counted else None
        if quota is not None:
            kept = await self.snapshots(owner)
            self.admission.check_snapshots(owner, len(kept), sum(s.size_bytes or 0 for s in kept))
        async with self._running_or_paused(record, "snapshotted"):
            began = time.perf_counter()
            stored = self.snapshot_catalog.snapshot_name(name, owner)
            snap = await self.worker.snapshot(sandbox_id, stored, owner, mode, record.node_id, early=then is not None)
            try:
                if quota is not None:
                    await self._within_snapshot_quota(owner, snap)
                if then is not None:
                    then(snap)
            finally:
                if then is not None:  # the sandbox stays locked until it is back
                    await self.worker.back(sandbox_id, record.node_id)
        self.events.emit("snapshot", record, mode=mode, seconds=time.perf_counter() - began)
        return snap

    async def _within_snapshot_quota(self, owner: str | None, snap: Snapshot) -> None:
        """The snapshot just taken, counted with the others kept now (another taken meanwhile
        included): past the namespace's count or bytes it is deleted and refused (429)."""
        kept = [s for s in await self.snapshots(owner) if s.name != snap.name]
        try:
            self.admission.check_snapshots(owner, len(kept), sum(s.size_bytes or 0 for s in kept), snap.size_bytes or 0)
        except QuotaExceeded:
            await self.delete_snapshot(snap.name, owner)
            raise

    async def restore(self, sandbox_id: str, owner: str | None, name: str) -> SandboxRecord:
        """Roll a running or paused sandbox back to the owner's snapshot ``name`` in place: the
        same id, tokens and ports; the snapshot's files (``full``: its processes) and the
        sandbox's own limits. A paused sandbox runs afterwards. Commands still running end with
        an error that says so. Another owner's sandbox or snapshot is missing (404); a snapshot
        of another backend is a 400."""
        record = await self.lookup(sandbox_id, owner)
        snap = await self.get_snapshot(name, owner)
        async with self._running_or_paused(record, "restored in place (start a new one from the snapshot instead)"):
            began = time.perf_counter()
            info = await self.worker.restore(sandbox_id, name, owner, record.node_id)
            record.image = info.spec.image
            self.touch(record)
            if record.state == "paused":
                record.spec = {k: v for k, v in record.spec.items() if k != "paused_at"}
                await self._settle(self._change(record, "running", "restore"))
            else:
                self.save(record)
        self.events.emit("restored", record, snapshot=name, mode=snap.mode, seconds=time.perf_counter() - began)
        return record

    async def fork(self, sandbox_id: str, owner: str | None, count: int, mode: str = "filesystem",
                   keep_snapshot: bool = False, wait: bool = True,
                   meta: dict | None = None) -> tuple[list[SandboxRecord], Snapshot | None]:
        """``count`` (1 to 20) new sandboxes from a fresh snapshot of a running or paused one:
        each starts on its files (``full``: goes on with its processes). Returns the children's
        records (running, or failed with the reason) in order, and the snapshot where it is kept
        (``keep_snapshot``; otherwise it is deleted once the children run, where the backend
        allows). ``wait`` false: returns once the snapshot is taken, the children pending."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FORK:
            raise BadRequest(f"fork count {count!r}: ask for 1 to {MAX_FORK} sandboxes")
        parent = await self.lookup(sandbox_id, owner)
        self.check_mode(mode, sandbox_id, parent.node_id)
        if parent.state not in ("running", "paused"):
            raise Conflict(f"sandbox {sandbox_id} is {parent.state}; only a running or paused sandbox can be forked")
        meta = meta or {"namespace": parent.namespace, "user_id": parent.user_id,
                        "experiment_id": parent.experiment_id, "cluster": parent.cluster}
        # the children live as their parent was asked to: its idle timeout and what that does
        lifecycle = {k: parent.spec[k] for k in ("on_timeout", "auto_resume") if k in parent.spec}
        # The children are admitted together, before the snapshot: all of them fit, or none starts.
        ids = [uuid.uuid4().hex for _ in range(count)]
        self.admission.admit(owner, [(sid, *self.cost_of(parent)) for sid in ids])
        children: list[SandboxRecord] = []
        tasks: list[asyncio.Task] = []
        taken: list[Snapshot] = []

        def start_children(snap: Snapshot) -> None:  # as soon as the snapshot is whole: beside the parent's way back
            taken.append(snap)
            for child_id in ids:
                req = SandboxStartRequest(snapshot=snap.name, image=snap.spec.image, egress=snap.spec.egress,
                                          auto_clear_seconds=parent.auto_clear_seconds, **lifecycle)
                child = self._new_record(child_id, req, owner, meta, None, {"forked_from": sandbox_id})
                children.append(child)
                spec = self.snapshot_catalog.snapshot_start(child, snap)
                tasks.append(asyncio.create_task(self._create(child, req, spec), name=f"fork-{child_id}"))
                self._starting[child_id] = tasks[-1]

        try:
            snap = await self.snapshot(sandbox_id, owner, None, mode, counted=keep_snapshot, then=start_children)
        except BaseException:
            if not children:
                for sid in ids:
                    self.admission.release(sid)
                raise
            # The parent did not come back from the snapshot: its children and the snapshot go too,
            # all or none (where the parent's own restore failed, the worker has deleted it already).
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(self.delete(c.sandbox_id, owner) for c in children), return_exceptions=True)
            with contextlib.suppress(RockError):
                await self.delete_snapshot(taken[0].name, owner)
            raise
        done = asyncio.ensure_future(self._forked(parent, children, tasks, snap, keep_snapshot))
        if wait:
            return await asyncio.shield(done)
        self._save_soon(done)
        return children, snap if keep_snapshot else None

    async def _forked(self, parent: SandboxRecord, children: list[SandboxRecord], tasks: list[asyncio.Task],
                      snap: Snapshot, keep: bool) -> tuple[list[SandboxRecord], Snapshot | None]:
        began = time.perf_counter()
        await asyncio.gather(*tasks, return_exceptions=True)
        up = sum(c.state == "running" for c in children)
        self.events.emit("forked", parent, children=up, mode=snap.mode, seconds=time.perf_counter() - began)
        if keep:
            return children, snap
        return children, await self.snapshot_catalog.release_fork_snapshot(parent, children, snap)

    async def _settle(self, saved: asyncio.Future) -> None:
        """A state change's write: waited for where another process may serve the caller's next
        request (a shared store); otherwise it lands in order behind the ones before it, and the
        caller's next request reads the record from memory meanwhile."""
        if self.store.shared:
            await saved
        else:
            self._save_soon(saved)

    async def quiet_stop(self, sandbox_id: str, node_id: str | None = None, keep: bool = False) -> None:
        """Stop the sandbox on its worker, best effort: gone already is fine, a failure is logged
        (the worker's reaper removes what is left). ``keep``: its files stay for a restart."""
        try:
            await self.worker.stop(sandbox_id, node_id, keep=keep)
        except SandboxNotFound:
            pass
        except Exception:  # noqa: BLE001 - stopping is best effort; the worker reaps leftovers
            log.exception("stopping sandbox %s failed", sandbox_id)

    async def transition(self, record: SandboxRecord, to: str, event: str, message: str | None = None) -> None:
        """Move ``record`` along one edge of the state machine (``TRANSITIONS``; another is a
        BadRequest) and wait until the store has the change."""
        await self._change(record, to, event, message)

    def _change(self, record: SandboxRecord, to: str, event: str, message: str | None = None) -> asyncio.Future:
        """Move ``record`` to ``to`` now and queue the write; returns the write."""
        before = record.state
        if to != before and to not in TRANSITIONS.get(before, ()):
            raise BadRequest(f"sandbox {record.sandbox_id} cannot go from {before} to {to}")
        record.state = to
        self.events.emit("state", record, from_state=before, event=event)
        if to == "deleted":
            self.commands.forget(record.sandbox_id)
        saved = self.write_record(record, before, event, message)
        self.held.place(record)
        return saved

    def write_record(self, record: SandboxRecord, before: str | None, event: str | None, message: str | None = None) -> asyncio.Future:
        """Queue ``record``'s write to the store, with the event that changed it; it stays held in
        memory until stored. Returns the write (its revision once stored)."""
        sid = record.sandbox_id
        record.due_at = self.deadline(record)
        saved = self.store.save(record, before, event, message)
        row_state = record.state

        def stored(f: asyncio.Future) -> None:  # our own write comes back from a refresh as nothing new
            if not f.cancelled():
                if f.exception() is not None:  # the record in memory is ahead of the store: say so
                    log.error("sandbox %s: writing its record (%s -> %s, %s) to the store failed: %r",
                              sid, before, row_state, event, f.exception())
                elif f.result():
                    record.rev = max(record.rev, f.result())

        saved.add_done_callback(stored)
        self.held.track(sid, saved)  # kept in memory until stored (then maybe trimmed: after the rev above)
        return saved

    # -- nodes of a cluster (the worker tells) -----------------------------------------------------

    async def node_lost(self, name: str, reason: str) -> None:
        await node_lost(self, name, reason)

    async def node_back(self, name: str, sandbox_ids: list[str]) -> None:
        await node_back(self, name, sandbox_ids)

    async def sandbox_lost(self, sandbox_id: str, reason: str) -> None:
        """The worker saw the sandbox die (its agent went away): the record says failed, with why."""
        record = self.records.get(sandbox_id)
        if record is None or record.state != "running":
            return
        async with self.lock(sandbox_id):
            if record.state == "running":
                record.failure_reason = reason
                await self.transition(record, "failed", "agent_lost", reason)
