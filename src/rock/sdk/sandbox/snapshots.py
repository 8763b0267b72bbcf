"""``sandbox.snapshots``: pause, resume, snapshots and fork in the Sandbox SDK (each callable on the
``Sandbox`` too; ``SyncSandbox`` has the same calls, blocking).

    await sandbox.pause()                        # processes kept in memory, no CPU; calls raise SandboxPaused
    await sandbox.resume()
    snap = await sandbox.snapshot(mode="filesystem")          # a Snapshot you own; outlives the sandbox
    again = Sandbox(SandboxConfig(snapshot=snap.name)); await again.start()
    children = await sandbox.fork(4)             # 4 running Sandbox objects from one state
    await sandbox.restore(snap.name)             # roll this sandbox back in place (same id, tokens, ports)
    await sandbox.list_snapshots(); await sandbox.delete_snapshot(snap.name)

``mode="full"`` (memory and processes) needs an admin on the gvisor backend; elsewhere the admin
refuses it (BadRequest, naming the backends that can).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Generic, Protocol, TypeVar
from urllib.parse import quote

from rock.actions.snapshots import SnapshotInfo
from rock.errors import SandboxStartError
from rock.sdk.sandbox.parts import SandboxContext, SandboxPart


class Child(Protocol):
    """What a fork's child must offer to be cleaned up when the fork as a whole failed."""

    async def delete(self) -> None:
        """Delete the child sandbox."""

    async def aclose(self) -> None:
        """Close the child's HTTP connections."""


S = TypeVar("S", bound=Child)  # what a fork's children are (a Sandbox, or a SyncSandbox's own)


class Snapshot(SnapshotInfo):
    """A snapshot as the admin reports it: ``name`` (start sandboxes from it with
    ``SandboxConfig(snapshot=name)``), ``mode``, ``backend``, ``source`` (the sandbox it was taken
    from), ``image``, ``created_at``, ``size_bytes`` and ``took_ms`` (how long its source was frozen)."""


class Snapshots(SandboxPart, Generic[S]):
    """Pause/resume, snapshots and fork of this sandbox; listing and deleting the caller's snapshots.
    ``spawn`` makes a fork's child from a context bound to the child's id (the ``Sandbox`` class the
    parent is, or a ``SyncSandbox``)."""

    def __init__(self, context: SandboxContext, spawn: Callable[[SandboxContext], S]) -> None:
        super().__init__(context)
        self._spawn = spawn

    async def pause(self) -> None:
        """Pause the sandbox: its processes stop where they stand, kept in memory, using no CPU.
        Calls to it raise ``SandboxPaused`` until ``resume()`` (or resume it on their own when it
        was started with ``auto_resume``). Its idle timeout does not run while it is paused."""
        await self._context.http.post(self._context.at("pause"), {})

    async def resume(self) -> None:
        """Let the paused sandbox run on from where it stopped; its idle time starts afresh."""
        await self._context.http.post(self._context.at("resume"), {})

    async def snapshot(self, name: str | None = None, mode: str = "filesystem") -> Snapshot:
        """Save the sandbox's state as a snapshot you own (the sandbox runs on). ``mode``:
        ``filesystem`` (its files) or ``full`` (its memory and processes too; gvisor). ``name``:
        1-53 letters, digits, '_' or '-' (with tokens on, the snapshot's ``name`` gets a suffix of
        your namespace: use the returned one)."""
        body = {"mode": mode} | ({"name": name} if name is not None else {})
        context = self._context
        return Snapshot.model_validate(await context.http.post(context.at("snapshot"), body,
                                                               timeout=context.config.startup_timeout + 30))

    async def fork(self, n: int = 1, mode: str = "filesystem") -> list[S]:
        """``n`` (1 to 20) new sandboxes from a fresh snapshot of this one, each running and ready:
        each starts on this sandbox's files (``full``: goes on with its processes too) and is its
        own from then on. All or nothing: if one child fails to start, the others are deleted and
        ``SandboxStartError`` names why."""
        context = self._context
        result = await context.http.post(context.at("fork"), {"count": n, "mode": mode},
                                          timeout=context.config.startup_timeout + 60)
        children: list[tuple[S, dict[str, Any]]] = []
        for item in result["sandboxes"]:
            own = context.config.model_copy(update={"sandbox_id": item["sandbox_id"], "snapshot": None})
            born = SandboxContext(own, context.transport)
            born.bind(item["sandbox_id"], item.get("host_name"), item.get("host_ip"))
            children.append((self._spawn(born), item))
        failed = [item for _, item in children if item.get("state") != "running"]
        if failed:
            await asyncio.gather(*(child.delete() for child, _ in children), return_exceptions=True)
            await asyncio.gather(*(child.aclose() for child, _ in children), return_exceptions=True)
            reasons = "; ".join(f"{i['sandbox_id']}: {i.get('failure_reason') or i.get('state')}" for i in failed)
            raise SandboxStartError(f"fork of {context.sandbox_id}: {len(failed)} of {n} children failed ({reasons})")
        return [child for child, _ in children]

    async def restore(self, snapshot: "str | Snapshot") -> None:
        """Roll this sandbox back to one of your snapshots in place (a reset): it keeps its id, its
        tokens, its ports and this object; its files become the snapshot's (a ``full`` snapshot
        brings its processes back too) and its limits stay its own. Files written since are gone.
        Commands still running end with an error that says the sandbox was restored; a paused
        sandbox runs afterwards. The snapshot may be any of yours taken on this backend."""
        name = snapshot.name if isinstance(snapshot, SnapshotInfo) else snapshot
        context = self._context
        await context.http.post(context.at("restore"), {"snapshot": name}, timeout=context.config.startup_timeout + 30)

    async def list_snapshots(self) -> list[Snapshot]:
        """Your snapshots (the token's namespace), by name."""
        return [Snapshot.model_validate(s) for s in await self._context.http.get("/snapshots", {})]

    async def get_snapshot(self, name: str) -> Snapshot:
        """One of your snapshots by name (``SnapshotNotFound`` otherwise)."""
        return Snapshot.model_validate(await self._context.http.get(f"/snapshots/{quote(name, safe='')}", {}))

    async def delete_snapshot(self, name: str) -> None:
        """Delete one of your snapshots; sandboxes started from it run on."""
        await self._context.http.delete(f"/snapshots/{quote(name, safe='')}")
