"""Taking a snapshot and forking from one, the same on every backend: claim the name, let the
backend save its part, record it (or undo all of it on failure); start n children and, if one
fails, remove the others and the snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Awaitable

from rock.errors import BadRequest
from rock.runtime.snapshots import Snapshot, tree_bytes
from rock.runtime.spec import RuntimeHandle, SandboxSpec

if TYPE_CHECKING:
    from rock.runtime.base import Runtime

MAX_FORK = 256


async def take_snapshot(runtime: "Runtime", handle: "RuntimeHandle", name: str, owner: str, mode: str) -> Snapshot:
    """``Runtime.snapshot``: the backend's ``_snapshot`` between the claim of ``name`` and its
    record, and then, where the backend has one, the source's own way back (``_snapshot``'s
    return)."""
    snap, back = await begin_snapshot(runtime, handle, name, owner, mode)
    if back is not None:
        await back
    return snap


async def begin_snapshot(runtime: "Runtime", handle: "RuntimeHandle", name: str, owner: str,
                         mode: str) -> tuple[Snapshot, Awaitable[None] | None]:
    """``Runtime.begin_snapshot``: the snapshot saved and recorded, and what the source still has
    to do to go on (None: nothing), which the caller must await. Until it ends, a delete of the
    snapshot waits (the source reads the image); if it fails, the snapshot is deleted."""
    snap, source_back = await _save(runtime, handle, name, owner, mode)
    if source_back is None:
        return snap, None
    held = contextlib.AsyncExitStack()  # entered now: a delete before the caller awaits still waits
    await held.enter_async_context(runtime.snapshots.in_use(snap))

    async def back() -> None:
        try:
            async with held:
                await source_back
        except BaseException:
            with contextlib.suppress(Exception):
                await runtime.delete_snapshot(snap)
            raise

    return snap, back()


async def _save(runtime: "Runtime", handle: "RuntimeHandle", name: str, owner: str,
                mode: str) -> tuple[Snapshot, Awaitable[None] | None]:
    """The snapshot saved and recorded (or undone on failure), and what the source still has to do
    to go on, None if nothing: the caller awaits that (a fork, beside its children's starts)."""
    if mode == "full" and not runtime.full_snapshots:
        raise BadRequest(f"the {runtime.name} backend cannot take full (memory) snapshots; take a filesystem "
                         "snapshot, or run the sandbox on the gvisor backend")
    path = runtime.snapshots.claim(name, mode)
    snap = Snapshot(name=name, owner=owner, backend=runtime.name, mode=mode, source=handle.sandbox_id,
                    spec=handle.spec)
    source_back = None
    try:
        t0 = time.perf_counter()
        source_back = await runtime._snapshot(handle, snap, path)
        snap.took_ms = snap.took_ms if snap.took_ms is not None else (time.perf_counter() - t0) * 1e3
        if snap.size_bytes is None:  # what it takes on disk: its directory's blocks (quotas count them)
            snap.size_bytes = await asyncio.to_thread(tree_bytes, path)
        runtime.snapshots.save(snap)
    except BaseException:
        if source_back is not None:  # saved, but not recorded: the source still comes back, from the image
            with contextlib.suppress(Exception):
                await source_back
        with contextlib.suppress(Exception):
            await runtime._delete_snapshot(snap)
        runtime.snapshots.remove(name)
        raise
    return snap, source_back


def child_spec(runtime: "Runtime", snapshot: Snapshot, spec: "SandboxSpec | None") -> "SandboxSpec":
    """The spec of a sandbox started from ``snapshot``: the caller's, else the source's under a new id."""
    if snapshot.backend != runtime.name:
        raise BadRequest(f"snapshot {snapshot.name!r} was taken on the {snapshot.backend} backend; this one is "
                         f"{runtime.name}")
    return spec or snapshot.spec.model_copy(update={"sandbox_id": f"{snapshot.source[:12]}-{os.urandom(4).hex()}"})


async def fork(runtime: "Runtime", handle: "RuntimeHandle", n: int, owner: str, mode: str,
               name: str | None) -> tuple[Snapshot, list["RuntimeHandle"]]:
    """``Runtime.fork``: a fresh snapshot, then ``n`` children started from it at once."""
    if not 1 <= n <= MAX_FORK:
        raise BadRequest(f"fork of {n} sandboxes: ask for 1 to {MAX_FORK}")
    snap, source_back = await _save(runtime, handle, name or f"fork-{handle.sandbox_id[:24]}-{os.urandom(4).hex()}",
                                    owner, mode)
    try:
        async with runtime.snapshots.in_use(snap):  # a delete by its name waits for the children
            if source_back is None:
                children = await runtime._start_children(snap, n)
            else:
                # The children start while the source goes on (a gVisor source restores itself from
                # the image they start from): one restore less in a row. All or none, as before.
                started, back = await asyncio.gather(runtime._start_children(snap, n), source_back,
                                                     return_exceptions=True)
                if isinstance(back, BaseException) or isinstance(started, BaseException):
                    await _destroy_all(runtime, started if isinstance(started, list) else [])
                    raise back if isinstance(back, BaseException) else started
                children = started
    except BaseException:
        with contextlib.suppress(Exception):
            await runtime.delete_snapshot(snap)
        raise
    return snap, children


async def start_each(runtime: "Runtime", snap: Snapshot, n: int) -> list["RuntimeHandle"]:
    """``n`` sandboxes from ``snap``, started concurrently; on any failure the ones that did start
    are destroyed and the first failure raised."""
    results = await asyncio.gather(*(runtime.start_from(snap) for _ in range(n)), return_exceptions=True)
    children = [r for r in results if isinstance(r, RuntimeHandle)]
    failed = [r for r in results if not isinstance(r, RuntimeHandle)]
    if failed:
        await _destroy_all(runtime, children)
        raise failed[0]
    return children


async def _destroy_all(runtime: "Runtime", children: list["RuntimeHandle"]) -> None:
    """Undo the children of a fork that failed, best effort: a destroy that fails leaves the rest
    to the runtime's reaper."""
    for child in children:
        with contextlib.suppress(Exception):
            await runtime.destroy(child)
