"""Pause, resume, snapshots and fork in the admin: the operations every front door calls (ROCK's
API and SDK, the CLI, the e2b door, the UI), owner-checked, on the records' state machine.

``PauseSnapshots`` is mixed into ``Sandboxes`` (``rock.admin.sandboxes``), whose records, locks
and worker it uses. The methods, for the doors::

    await svc.pause(sandbox_id, owner)                 -> SandboxRecord (state "paused")
    await svc.resume(sandbox_id, owner)                -> SandboxRecord (state "running")
    await svc.snapshot(sandbox_id, owner, name=None, mode="filesystem")   -> Snapshot
    await svc.fork(sandbox_id, owner, count, mode="filesystem")           -> (children's records, Snapshot | None)
    await svc.snapshots(owner)                         -> [Snapshot]
    await svc.delete_snapshot(name, owner)
    await svc.start(SandboxStartRequest(snapshot=name, ...), owner, meta, wait)   # a sandbox from a snapshot

Rules:
- Another owner's sandbox or snapshot is absent (SandboxNotFound / SnapshotNotFound: 404).
- With an owner (tokens on), a snapshot name chosen by the caller is stored as
  ``<name>.<10 hex>`` of that owner, as sandbox ids are: two tenants choosing one name get two
  snapshots, and neither learns the other's exists (never a 409 across tenants).
- TTL (E2B's rule): a paused sandbox's idle timeout does not run. Resuming starts its idle time
  afresh. With ``on_timeout: "pause"`` the idle timeout pauses instead of stopping; a paused
  sandbox then waits for a resume or a stop/delete (it is not reaped on a timer).
- A call to a paused sandbox (a command, a file, a session) resumes it first when it was started
  with ``auto_resume``; otherwise it is refused, 409 "sandbox X is paused: resume it first".
- A paused sandbox survives an admin restart (the worker keeps the freeze on disk; the record
  says paused; ``reconcile`` keeps both).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from rock.admin.auth import namespaced_id
from rock.admin.store import SandboxRecord
from rock.errors import BadRequest, Conflict, RockError, SandboxPaused, SnapshotNotFound
from rock.runtime.snapshots import Snapshot

log = logging.getLogger("rock.admin")

MAX_FORK = 20  # E2B's fork(count=1..20); rock.actions.snapshots states the same for the schema
FULL_BACKENDS = ("gvisor",)  # the backends whose runtime takes full (memory) snapshots


class PauseSnapshots:
    """Mixed into ``Sandboxes``: pause/resume, snapshots, fork (see the module's rules)."""

    # -- pause / resume ----------------------------------------------------------------------

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
        async with self._lock(sandbox_id):
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

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot_name(self, name: str | None, owner: str | None) -> str:
        """The stored name of a caller's snapshot name (see the module's rules)."""
        if name is None:
            return f"snap-{uuid.uuid4().hex[:16]}"
        return name if owner is None else namespaced_id(name, owner)

    def check_mode(self, mode: str) -> None:
        if mode not in ("filesystem", "full"):
            raise BadRequest(f"snapshot mode {mode!r}: choose filesystem or full")
        backend = self.worker.backend_name
        if mode == "full" and backend not in FULL_BACKENDS:
            raise BadRequest(f"mode=full: the {backend} backend cannot take full (memory) snapshots; only "
                             f"{', '.join(FULL_BACKENDS)} can (start the admin with --backend gvisor), or take a "
                             "filesystem snapshot")

    async def snapshot(self, sandbox_id: str, owner: str | None, name: str | None = None,
                       mode: str = "filesystem") -> Snapshot:
        """Save the running or paused sandbox's state as a snapshot of ``owner``; the sandbox runs
        on (it is frozen only while its state is taken). The snapshot outlives the sandbox."""
        record = await self.lookup(sandbox_id, owner)
        self.check_mode(mode)
        await self._wait_started(sandbox_id)
        async with self._lock(sandbox_id):
            if record.state not in ("running", "paused"):
                raise Conflict(f"sandbox {sandbox_id} is {record.state}; only a running or paused sandbox can be "
                               "snapshotted")
            began = time.perf_counter()
            snap = await self.worker.snapshot(sandbox_id, self.snapshot_name(name, owner), owner, mode, record.node_id)
        self.events.emit("snapshot", record, mode=mode, seconds=time.perf_counter() - began)
        return snap

    async def snapshots(self, owner: str | None) -> list[Snapshot]:
        """The owner's snapshots (no other owner's), by name."""
        return await self.worker.snapshots(owner)

    async def get_snapshot(self, name: str, owner: str | None) -> Snapshot:
        return await self.worker.get_snapshot(name, owner)

    async def delete_snapshot(self, name: str, owner: str | None) -> None:
        """Delete the owner's snapshot; the sandboxes started from it run on (where an engine image
        backs it and sandboxes still use it, 409 says so)."""
        await self.worker.delete_snapshot(name, owner)

    async def from_snapshot(self, req, draft: SandboxRecord):
        """A start request naming a snapshot: the request as recorded (the snapshot's image and
        cpus) and the runtime spec. Another owner's snapshot is absent (404); one of another
        backend is refused (400) before anything is recorded."""
        snap = await self.get_snapshot(req.snapshot, draft.owner)
        backend = self.worker.backend_name
        if snap.backend != backend and backend != "cluster":
            raise BadRequest(f"snapshot {req.snapshot!r} was taken on the {snap.backend} backend; this admin runs "
                             f"{backend}: start it on an admin with --backend {snap.backend}")
        req = req.model_copy(update={"image": snap.spec.image, "memory": None, "cpus": snap.spec.cpus})
        return req, self.snapshot_start(draft, snap)

    def snapshot_start(self, record: SandboxRecord, snap: Snapshot):
        """The spec of a new sandbox from ``snap``: the snapshot's image and limits, the record's id
        and labels."""
        labels = {"rock.owner": record.owner or "", "rock.namespace": record.namespace or ""}
        return snap.spec.model_copy(update={"sandbox_id": record.sandbox_id, "labels": labels, "gpu_ids": []})

    # -- fork --------------------------------------------------------------------------------

    async def fork(self, sandbox_id: str, owner: str | None, count: int, mode: str = "filesystem",
                   keep_snapshot: bool = False, wait: bool = True,
                   meta: dict | None = None) -> tuple[list[SandboxRecord], Snapshot | None]:
        """``count`` (1 to 20) new sandboxes from a fresh snapshot of a running or paused one:
        each starts on its files (``full``: goes on with its processes). Returns the children's
        records (running, or failed with the reason) in order, and the snapshot where it is kept
        (``keep_snapshot``; otherwise it is deleted once the children run, where the backend
        allows). ``wait`` false: returns once the snapshot is taken, the children pending."""
        from rock.actions.sandbox import SandboxStartRequest

        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FORK:
            raise BadRequest(f"fork count {count!r}: ask for 1 to {MAX_FORK} sandboxes")
        parent = await self.lookup(sandbox_id, owner)
        self.check_mode(mode)
        if parent.state not in ("running", "paused"):
            raise Conflict(f"sandbox {sandbox_id} is {parent.state}; only a running or paused sandbox can be forked")
        meta = meta or {"namespace": parent.namespace, "user_id": parent.user_id,
                        "experiment_id": parent.experiment_id, "cluster": parent.cluster}
        # the children live as their parent was asked to: its idle timeout and what that does
        lifecycle = {k: parent.spec[k] for k in ("on_timeout", "auto_resume") if k in parent.spec}
        snap = await self.snapshot(sandbox_id, owner, None, mode)
        children = []
        for _ in range(count):
            req = SandboxStartRequest(snapshot=snap.name, image=snap.spec.image,
                                      auto_clear_seconds=parent.auto_clear_seconds, **lifecycle)
            child = self._new_record(uuid.uuid4().hex, req, owner, meta, None, {"forked_from": sandbox_id})
            children.append(child)
            self._starting[child.sandbox_id] = asyncio.create_task(
                self._create(child, req, self.snapshot_start(child, snap)), name=f"fork-{child.sandbox_id}")
        tasks = [self._starting[c.sandbox_id] for c in children]
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
        try:
            await self.worker.delete_snapshot(snap.name, parent.owner)
        except RockError as exc:  # an engine image its children run on: it goes with the last of them
            log.info("fork of %s: its snapshot %s stays until its children are deleted (%s)", parent.sandbox_id,
                     snap.name, exc.message)
            self._fork_snapshots[snap.name] = (parent.owner, {c.sandbox_id for c in children})
            return children, snap
        return children, None

    def _fork_child_gone(self, kind: str, record: SandboxRecord, info: dict) -> None:
        """An events listener: once the last child of a fork whose snapshot had to stay (docker:
        the children's image) is deleted, the snapshot goes too. In memory: after an admin
        restart such a snapshot stays listed, for its owner to delete."""
        if kind != "state" or record.state != "deleted":
            return
        for name, (owner, children) in list(self._fork_snapshots.items()):
            children.discard(record.sandbox_id)
            if not children:
                del self._fork_snapshots[name]
                self._save_soon(asyncio.ensure_future(self._drop_fork_snapshot(name, owner)))

    async def _drop_fork_snapshot(self, name: str, owner: str | None) -> None:
        # A deleted child's container may still be going in the background (the runtime's
        # release), holding the image a little longer: tried again for a while (a back-off).
        for attempt in range(1, 21):  # about 40 s in all
            try:
                await self.worker.delete_snapshot(name, owner)
                return
            except Conflict:
                await asyncio.sleep(0.2 * attempt)
            except RockError as exc:  # deleted by its owner meanwhile
                log.info("the fork snapshot %s: %s", name, exc.message)
                return
        log.warning("the fork snapshot %s stays (still in use after its children were deleted)", name)


__all__ = ["FULL_BACKENDS", "MAX_FORK", "PauseSnapshots", "SnapshotNotFound"]
