"""Snapshots as owned, named objects on disk, and what every backend's snapshot shares.

A snapshot is ``<state_dir>/snapshots/<name>/``: ``snapshot.json`` (the record below) beside
whatever the backend keeps for it (an upper layer's copy, a checkpoint image; an engine image
lives in the engine and is named in the record). Its name is claimed by the ``mkdir`` of that
directory, which is atomic: two snapshots of one name cannot both be made. A snapshot belongs
to its owner; asked for by anyone else it does not exist (``SnapshotNotFound``, as if absent).
It does not depend on its source: deleting the sandbox leaves it, and sandboxes start from it
for as long as it is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rock.errors import BadRequest, Conflict, SnapshotNotFound
from rock.runtime.spec import SandboxSpec

MODES = ("filesystem", "full")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RECORD = "snapshot.json"


class Snapshot(BaseModel):
    """A sandbox's state at one instant: ``filesystem`` (its writable layer) or ``full`` (its
    memory and processes as well)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    owner: str
    backend: str
    mode: str
    source: str  # the sandbox it was taken from (which may be gone since)
    spec: SandboxSpec  # the source's spec: sandboxes started from the snapshot get its limits and image
    created_at: float = Field(default_factory=time.time)
    size_bytes: int | None = None
    took_ms: float | None = None  # how long the source was frozen for it
    extra: dict[str, str] = Field(default_factory=dict)  # the backend's: image id, image root, ...


class SnapshotStore:
    """The snapshots of one state dir."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Starts in progress from each snapshot: a delete waits for them to take what they need
        # (links, an engine image) rather than pull the files from under them.
        self._starting: dict[str, int] = {}
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def path(self, name: str) -> Path:
        """The folder of snapshot ``name``."""
        return self.root / name

    def claim(self, name: str, mode: str) -> Path:
        """Take ``name`` for a new snapshot; its directory, empty, for the backend to fill."""
        if not _NAME.match(name):
            raise BadRequest(f"snapshot name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit")
        if mode not in MODES:
            raise BadRequest(f"snapshot mode {mode!r}: choose one of {', '.join(MODES)}")
        path = self.path(name)
        try:
            path.mkdir()
        except FileExistsError:
            raise Conflict(f"a snapshot named {name!r} exists already") from None
        return path

    def save(self, snapshot: Snapshot) -> None:
        """Write a snapshot's record; the snapshot exists once it is written (atomically, never half)."""
        path = self.path(snapshot.name) / RECORD
        tmp = path.with_name(RECORD + ".tmp")
        tmp.write_text(snapshot.model_dump_json())
        os.replace(tmp, path)  # a snapshot exists once its record does, never half-written

    def get(self, name: str, owner: str) -> Snapshot:
        """The owner's snapshot ``name``; SnapshotNotFound when there is none (or not theirs)."""
        try:
            snapshot = Snapshot(**json.loads((self.path(name) / RECORD).read_text())) if _NAME.match(name) else None
        except (OSError, ValueError):
            snapshot = None
        if snapshot is None or snapshot.owner != owner:
            raise SnapshotNotFound(f"no snapshot named {name!r}")
        return snapshot

    def list(self, owner: str) -> list[Snapshot]:
        """The owner's snapshots (unreadable or others' left out)."""
        found = []
        for entry in sorted(os.listdir(self.root)):
            try:
                found.append(self.get(entry, owner))
            except SnapshotNotFound:
                continue
        return found

    @contextlib.asynccontextmanager
    async def in_use(self, snapshot: Snapshot):
        """Hold ``snapshot`` for a sandbox starting from it: a delete meanwhile waits for the block
        to end; one that came first makes this SnapshotNotFound, as if never there."""
        name = snapshot.name
        self._starting[name] = self._starting.get(name, 0) + 1
        try:
            self.get(name, snapshot.owner)
            yield
        finally:
            self._starting[name] -= 1
            if not self._starting[name]:
                del self._starting[name]
                async with self._condition():
                    self._condition().notify_all()

    def starting(self, name: str) -> int:
        """How many sandboxes are starting from the snapshot ``name`` right now."""
        return self._starting.get(name, 0)

    async def retire(self, name: str) -> None:
        """Take the snapshot away from everyone at once (its record), then wait for the starts
        already using it to finish; its files are still there for ``remove``."""
        (self.path(name) / RECORD).unlink(missing_ok=True)
        async with self._condition():
            await self._condition().wait_for(lambda: name not in self._starting)

    def remove(self, name: str) -> None:
        """The record first (the snapshot is gone for everyone at once), then its files."""
        path = self.path(name)
        (path / RECORD).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


async def copy_frozen(runtime, handle, source: Path, snapshot: Snapshot, path: Path) -> None:
    """A filesystem snapshot of a sandbox whose writable layer is the host directory ``source``:
    copied to ``<path>/upper`` while the sandbox is frozen (so no write lands half-way), then it
    runs on. Records how long it was frozen and the copy's size."""
    import asyncio

    async with runtime.frozen(handle):
        t0 = time.perf_counter()
        await asyncio.to_thread(copy_tree, source, path / "upper")
        snapshot.took_ms = (time.perf_counter() - t0) * 1e3
    snapshot.size_bytes = await asyncio.to_thread(tree_bytes, path / "upper")


async def seed_upper(snapshot_path: Path, target: Path) -> None:
    """A new sandbox's writable layer: a copy of the snapshot's (its own, so writes stay its own)."""
    import asyncio

    if target.exists():
        raise Conflict(f"sandbox directory {target.parent.name} exists already: choose another sandbox id")
    target.mkdir(parents=True)
    await asyncio.to_thread(copy_tree, snapshot_path / "upper", target)


def copy_tree(source: Path, target: Path) -> None:
    """A copy of a writable layer that keeps what overlayfs reads from it: modes, owners,
    hard links, whiteouts (character devices 0/0) and the opaque-directory xattrs. A hard-linked
    copy would not do: the sandbox writes its upper layer's files in place, which would change
    the snapshot after the fact (a snapshot's children, which never write it, link to it instead:
    ``rock.runtime.layers``)."""
    target.mkdir(exist_ok=True)
    done = subprocess.run(["cp", "-a", "--reflink=auto", "--", f"{source}/.", str(target)], capture_output=True)
    if done.returncode:
        raise OSError(f"copying {source} failed: {done.stderr.decode(errors='replace')[-300:]}")


def tree_bytes(root: Path) -> int:
    """Bytes of the blocks the files under ``root`` use."""
    total, stack = 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
    return total
