"""What a node's worker and the cluster's share for snapshots and forks.

The snapshot operations themselves are ``Worker``'s methods (``rock.worker.worker``): a sandbox
started from a snapshot is held and recorded like any started one (it survives a worker restart
the same way). ``fork_children`` is the fork, written only in terms of ``snapshot`` and
``start_from``, so the cluster's worker forks with the same code.

Owners: the runtime's snapshots belong to a string; the admin's "no namespace" (tokens off) is
``None``, kept on disk as ``""``.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from rock.errors import RockError
from rock.runtime.base import SandboxSpec
from rock.runtime.snapshots import Snapshot


def owner_key(owner: str | None) -> str:
    """The key snapshots are kept under for ``owner`` (the open admin's owner, None, is the empty key)."""
    return owner or ""


async def fork_children(worker, sandbox_id: str, owner: str | None, specs: list[SandboxSpec],
                        mode: str = "filesystem", name: str | None = None,
                        node_id: str | None = None) -> AsyncIterator[Snapshot | tuple]:
    """``fork`` over ``worker.snapshot`` and ``worker.start_from`` (a node's ``Worker`` or the
    cluster's, whose two calls go to the node that holds the sandbox or the snapshot).

    Starts ``len(specs)`` sandboxes from a fresh snapshot of ``sandbox_id``. Yields the snapshot
    first, then ``(spec, SandboxInfo or the RockError it failed with)`` per child as each comes up
    (the fastest first), and ends once the source is back (raising what its way back failed
    with). The snapshot stays; the caller deletes it or keeps it."""
    # early: the children start while the source is still on its way back (a full snapshot on
    # gVisor restores it from the image they start from).
    snap = await worker.snapshot(sandbox_id, name or f"fork-{sandbox_id[:24]}-{time.time_ns() % 10**8:08d}",
                                 owner, mode, node_id, early=True)
    back = asyncio.ensure_future(worker.back(sandbox_id, node_id))
    try:
        yield snap

        async def one(spec: SandboxSpec):
            try:
                return spec, await worker.start_from(snap.name, owner, spec)
            except RockError as exc:
                return spec, exc
            except Exception as exc:  # noqa: BLE001 - one child's failure is that child's, with why
                return spec, RockError(f"{type(exc).__name__}: {exc}")

        for done in asyncio.as_completed([one(spec) for spec in specs]):
            yield await done
    finally:
        await back
