"""A worker's snapshots and forks: the runtime's (``rock.runtime.snapshots``) with the worker's
bookkeeping around them (records, agent connections, sandbox ids).

``SnapshotOps`` is mixed into ``Worker``. A sandbox started from a snapshot is held and recorded
like any started one (it survives a worker restart the same way). ``ForkOps`` is the fork itself,
written only in terms of ``snapshot`` and ``start_from``, so the cluster's worker (whose two calls
go to the node that holds the sandbox or the snapshot) forks with the same code.

Owners: the runtime's snapshots belong to a string; the admin's "no namespace" (tokens off) is
``None``, kept on disk as ``""``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

from rock.errors import BadRequest, RockError
from rock.runtime.base import RuntimeHandle, SandboxSpec
from rock.runtime.snapshots import Snapshot
from rock.worker.agent_client import AgentClient

log = logging.getLogger("rock.worker")


def owner_key(owner: str | None) -> str:
    return owner or ""


class ForkOps:
    """``fork`` over ``snapshot`` and ``start_from`` (whatever implements them)."""

    async def fork(self, sandbox_id: str, owner: str | None, specs: list[SandboxSpec], mode: str = "filesystem",
                   name: str | None = None, node_id: str | None = None) -> AsyncIterator[Snapshot | tuple]:
        """Start ``len(specs)`` sandboxes from a fresh snapshot of ``sandbox_id``. Yields the
        snapshot first, then ``(spec, SandboxInfo or the RockError it failed with)`` per child as
        each comes up (the fastest first). The snapshot stays; the caller deletes it or keeps it."""
        snap = await self.snapshot(sandbox_id, name or f"fork-{sandbox_id[:24]}-{time.time_ns() % 10**8:08d}",
                                   owner, mode, node_id)
        yield snap

        async def one(spec: SandboxSpec):
            try:
                return spec, await self.start_from(snap.name, owner, spec)
            except RockError as exc:
                return spec, exc
            except Exception as exc:  # noqa: BLE001 - one child's failure is that child's, with why
                return spec, RockError(f"{type(exc).__name__}: {exc}")

        for done in asyncio.as_completed([one(spec) for spec in specs]):
            yield await done


class SnapshotOps(ForkOps):
    """Mixed into ``Worker`` (it has ``runtime``, ``_get``, ``_sandboxes``, ``records``, ``_hold``,
    ``_runtime_id`` and ``get``)."""

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
                       node_id: str | None = None) -> Snapshot:
        """Save the running (or paused) sandbox's state as the owner's snapshot ``name``."""
        sandbox = self._get(sandbox_id)
        if mode != "full" or not self.runtime.full_snapshots:
            return await self.runtime.snapshot(sandbox.handle, name, owner_key(owner), mode)
        # A full snapshot checkpoints the sandbox and restores it in place: its agent closes every
        # connection first, ours included. That close is not the sandbox dying (``_agent_lost``),
        # and the sandbox goes on with a new connection.
        sandbox.client.close()
        try:
            return await self.runtime.snapshot(sandbox.handle, name, owner_key(owner), mode)
        finally:
            sandbox.client = await AgentClient.connect(sandbox.handle.socket_path, sandbox.handle, paused_ok=True)
            self.records.save(sandbox)
            self._hold(sandbox)

    async def start_from(self, name: str, owner: str | None, spec: SandboxSpec,
                         node_id: str | None = None) -> "SandboxInfo":  # noqa: F821 - rock.worker.worker's
        """Start the sandbox ``spec.sandbox_id`` from the owner's snapshot ``name`` (its files, and
        with ``full`` its processes). ``spec``: the new sandbox's; its image is the snapshot's."""
        from rock.worker.worker import Sandbox, usable_id

        snap = await self.get_snapshot(name, owner)
        sid = spec.sandbox_id
        if not usable_id(sid):
            raise BadRequest("sandbox_id must be 1-128 characters, without '/' and not starting with '.'")
        if sid in self._sandboxes:
            return self.get(sid)
        started = time.perf_counter()
        handle: RuntimeHandle = await self.runtime.start_from(
            snap, spec.model_copy(update={"sandbox_id": self._runtime_id(sid), "gpu_ids": []}))
        try:
            client = await AgentClient.connect(handle.socket_path, handle)
            sandbox = Sandbox(sid, handle, client, spec.model_copy(update={"gpu_ids": []}))
            self.records.save(sandbox)
        except BaseException:
            await self.runtime.destroy(handle)
            raise
        self._hold(sandbox)
        log.info("sandbox %s running from snapshot %s (%s, %s, %.1f ms)", sid, name, snap.mode, self.backend_name,
                 (time.perf_counter() - started) * 1000)
        return self.get(sid)
