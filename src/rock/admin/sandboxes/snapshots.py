"""Pause, resume, snapshots and fork in the admin: the operations every front door calls (ROCK's
API and SDK, the CLI, the e2b door, the UI), owner-checked, on the records' state machine.

Two responsibilities, two homes. Pause, resume, snapshot and fork are transitions of a sandbox's
record (its lock, its state, the writes, the children's starts): they are ``Sandboxes``' own
methods (``rock.admin.sandboxes.service``), beside start and stop, because they are its state machine
and need all of it. What concerns snapshots only (their stored names, the modes this backend
takes, listing, reading and deleting one, what a start from one runs, and the snapshot a fork
had to keep until its last child goes) is ``SnapshotCatalog`` here, an object the service holds
as ``snapshot_catalog``; it needs only the worker and a way to let a write finish in the
background. The methods, for the doors (all on the service)::

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
import uuid
from typing import Callable

from rock.actions.egress import EgressRules
from rock.admin.sandboxes.egress import spec_egress
from rock.admin.sandboxes.ids import namespaced_id
from rock.admin.store import SandboxRecord
from rock.errors import BadRequest, Conflict, RockError, SnapshotNotFound
from rock.runtime import backends_with
from rock.runtime.snapshots import MODES, Snapshot

log = logging.getLogger("rock.admin")

class SnapshotCatalog:
    """An owner's snapshots as the worker keeps them (see the module's rules). ``save_soon``: lets
    a background task (a kept fork snapshot's removal) finish without anyone waiting for it."""

    def __init__(self, worker, save_soon: Callable[[asyncio.Future], None]):
        self.worker, self._save_soon = worker, save_soon
        self._fork_snapshots: dict[str, tuple] = {}  # a fork's kept snapshot -> (owner, its children left)

    def snapshot_name(self, name: str | None, owner: str | None) -> str:
        """The stored name of a caller's snapshot name (see the module's rules)."""
        if name is None:
            return f"snap-{uuid.uuid4().hex[:16]}"
        return name if owner is None else namespaced_id(name, owner)

    def check_mode(self, mode: str, sandbox_id: str | None = None, node_id: str | None = None) -> None:
        """A 400 for a mode the backend of ``sandbox_id`` cannot take (without one: no backend of
        this admin can)."""
        if mode not in MODES:
            raise BadRequest(f"snapshot mode {mode!r}: choose {' or '.join(MODES)}")
        if mode == "full" and not self.takes_full(sandbox_id, node_id):
            backends, where = self._backends(sandbox_id, node_id)
            full = backends_with("full_snapshots")
            raise BadRequest(f"mode=full: the {'/'.join(backends) or 'no'} backend{where} cannot take full (memory) "
                             f"snapshots; only {' or '.join(full)} can (start the "
                             f"{'admin' if not where else 'node worker'} with --backend {full[0]}), or take a "
                             "filesystem snapshot")

    def takes_full(self, sandbox_id: str | None = None, node_id: str | None = None) -> bool:
        """Whether the backend of ``sandbox_id`` (without one: any backend of this admin) takes
        full snapshots."""
        return any("full_snapshots" in c for c in self.worker.capabilities(sandbox_id, node_id))

    def _backends(self, sandbox_id: str | None, node_id: str | None) -> tuple[list[str], str]:
        """The backends that would take the snapshot, and where they run (for a message). On a
        cluster admin the worker's own name is "cluster": each node runs its own backend, so the
        sandbox's node answers (without a sandbox, the live nodes together)."""
        return self.worker.node_backends(sandbox_id, node_id)

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
        spec = self.snapshot_start(draft, snap)
        if req.egress is not None:  # a policy of the caller's replaces the snapshot's (checked as at a start)
            spec.egress = spec_egress(spec.network, req.egress)
        # The record keeps the network and policy the sandbox runs under (a restart of it asks for them again).
        req = req.model_copy(update={"image": snap.spec.image, "memory": None, "cpus": snap.spec.cpus,
                                     "network": spec.network,
                                     "egress": None if spec.egress is None else EgressRules.model_validate(spec.egress)})
        return req, spec

    def snapshot_start(self, record: SandboxRecord, snap: Snapshot):
        """The spec of a new sandbox from ``snap``: the snapshot's image, limits and egress policy
        (a gated sandbox's children are gated alike), the record's id and labels."""
        labels = {"rock.owner": record.owner or "", "rock.namespace": record.namespace or ""}
        # volumes are not in a snapshot: the new sandbox mounts what its own request names
        return snap.spec.model_copy(update={"sandbox_id": record.sandbox_id, "labels": labels, "gpu_ids": [],
                                            "volume_binds": []})

    # -- a fork's snapshot, once its children run --------------------------------------------

    async def release_fork_snapshot(self, parent: SandboxRecord, children: list[SandboxRecord],
                                    snap: Snapshot) -> Snapshot | None:
        """Delete a fork's snapshot now its children run; where the backend cannot yet (an engine
        image its children run on), it is kept until the last of them is deleted and returned."""
        try:
            await self.worker.delete_snapshot(snap.name, parent.owner)
        except RockError as exc:  # an engine image its children run on: it goes with the last of them
            log.info("fork of %s: its snapshot %s stays until its children are deleted (%s)", parent.sandbox_id,
                     snap.name, exc.message)
            self._fork_snapshots[snap.name] = (parent.owner, {c.sandbox_id for c in children})
            return snap
        return None

    def fork_child_gone(self, kind: str, record: SandboxRecord, info: dict) -> None:
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


__all__ = ["SnapshotCatalog", "SnapshotNotFound"]
