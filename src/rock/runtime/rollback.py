"""What turns a running sandbox's files back into a snapshot's, computed from the layers.

A bwrap or gVisor sandbox sees an overlay mounted on the host (gVisor's gofer serves it with
``--overlay2=none``, so the sandbox's writes reach the upper layer at once): its upper layer over read-only layers over its image root. A
filesystem snapshot of it is a copy of that upper layer, standing on the very same layers. So the
two views differ only where one of the two upper layers has an entry: walking those two trees
(never the image) finds every difference, and the plan rewrites only what differs. The sandbox's
agent applies the plan through its own root (``rock.agent.reset``): the host writes nothing inside
a live overlay (changing an overlay's layers under it is undefined) and never resolves a path
the sandbox can plant links in.

The walk models overlayfs's rules: a character device 0/0 is a whiteout (the name is deleted),
``trusted.overlay.opaque`` hides the layers below a directory. A layer using features the model
does not know (redirected directories, metadata-only copies) gives no plan: the caller restores
the slow way, by starting the snapshot anew.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from rock.runtime.base import RuntimeHandle
from rock.runtime.layers import layer_dirs
from rock.runtime.snapshots import Snapshot, SnapshotStore

log = logging.getLogger("rock.runtime.rollback")

OPAQUE = "trusted.overlay.opaque"
UNKNOWN_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
# Past these a start from the snapshot costs less (measured: 32 MiB through the agent took ~1 s
# against ~120 ms for a start, under load) and holds no plan in memory.
MAX_BYTES = 8 << 20
COMPARE_BYTES = 128 << 20  # read on each side to tell a committed layer's unchanged files (see _Planner.same)
MAX_OPS = 200_000
# Where the backend's agent takes descriptors (``RollsBackInPlace.passes_fds``), a file this large
# goes as its snapshot's file, opened read-only here, that the agent copies in the kernel: no
# read here, no transfer through the agent's socket. At most FDS_MAX of them (one message's
# descriptors); the rest, and smaller files, go in the body.
FD_MIN_BYTES = 64 << 10
FDS_MAX = 250


# A plan is first made on the caller's thread, up to this much work (a unit: an entry looked at,
# or 64 KiB read): the usual small change costs a fraction of a millisecond, less than handing
# it to a thread. Past it the plan is made again in a thread, off the event loop.
INLINE_BUDGET = 200


class Unplannable(Exception):
    """The layers hold something the plan cannot express; restore by starting anew."""


class _OverBudget(Exception):
    """The inline plan would take longer than ``INLINE_BUDGET`` allows."""


@dataclass
class Plan:
    """Operations in order (each a dict the agent reads), the file bodies they point into, and the
    descriptors (read-only, of the snapshot's files) the ops of the larger files name by index
    (``fd``): the caller passes them with the ops and then closes them (``close``)."""

    ops: list[dict] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    bytes: int = 0  # of the files it writes, in the body or by descriptor

    def add(self, op: dict) -> None:
        if len(self.ops) >= MAX_OPS:
            raise Unplannable(f"more than {MAX_OPS} changes")
        self.ops.append(op)

    def close(self) -> None:
        """Close the descriptors (once passed, or when the plan is not used)."""
        while self.fds:
            os.close(self.fds.pop())


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _View:
    """One overlay's layers, top first; layer 0 is the one that differs between the two views."""

    def __init__(self, layers: list[Path], spend=lambda units: None):
        self.layers = layers
        self._dirs = [str(layer) for layer in layers]
        self.spend = spend

    def at(self, i: int, rel: str) -> str:
        return os.path.join(self._dirs[i], rel) if rel else self._dirs[i]

    def _entry(self, i: int, rel: str, name: str, st: os.stat_result) -> tuple[int, os.stat_result] | None:
        if i == 0:
            for x in UNKNOWN_XATTRS:
                if _xattr(self.at(0, f"{rel}/{name}" if rel else name), x) is not None:
                    raise Unplannable(f"{rel}/{name} uses an overlay feature ({x}) the plan does not model")
        return None if _whiteout(st) else (i, st)

    def children(self, rel: str, dir_layers: list[int]) -> dict[str, tuple[int, os.stat_result]]:
        """The entries the overlay shows in directory ``rel`` (present in ``dir_layers``): name ->
        (the layer it comes from, its lstat), whiteouts applied."""
        seen: dict[str, tuple[int, os.stat_result] | None] = {}
        for i in dir_layers:
            base = self.at(i, rel)
            try:
                names = os.listdir(base)
            except FileNotFoundError:
                continue
            self.spend(len(names))
            for name in names:
                if name not in seen:
                    seen[name] = self._entry(i, rel, name, os.lstat(os.path.join(base, name)))
        return {n: e for n, e in seen.items() if e is not None}

    def lookup(self, rel: str, name: str, dir_layers: list[int]) -> tuple[int, os.stat_result] | None:
        """The entry the overlay shows as ``name`` in directory ``rel`` (one ``children`` item)."""
        for i in dir_layers:
            try:
                st = os.lstat(os.path.join(self.at(i, rel), name))
            except (FileNotFoundError, NotADirectoryError):
                continue
            return self._entry(i, rel, name, st)
        return None

    def upper_names(self, rel: str, dir_layers: list[int]) -> list[str]:
        """The names the upper layer holds in directory ``rel`` (none where it is not one of its layers)."""
        if not dir_layers or dir_layers[0] != 0:
            return []
        try:
            return os.listdir(self.at(0, rel))
        except FileNotFoundError:
            return []

    def dir_layers(self, rel: str, below: list[int]) -> list[int]:
        """The layers (of ``below``, the parent's) that make up directory ``rel``: from the top one
        where it is a directory down to an opaque one or to one where the name is something else."""
        out: list[int] = []
        for i in below:
            path = self.at(i, rel)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            out.append(i)
            if _xattr(path, OPAQUE) == b"y":
                break
        return out


def _meta(st: os.stat_result) -> dict:
    return {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def _same_meta(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool | None:
    """Whether two entries are the same by what their lstat and links say; None for two regular
    files of one size and second, which only their bytes can tell (see ``_Planner.same``)."""
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode) or _meta(a) != _meta(b):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) == os.readlink(pb)
    if stat.S_ISREG(a.st_mode):
        # A snapshot's copy keeps sizes and mtimes to the nanosecond (``cp -a``); an engine's commit
        # keeps mtimes to the second (the tar it is made from), so there the same second and the
        # same bytes are the same file.
        if a.st_size != b.st_size or a.st_mtime_ns // 10**9 != b.st_mtime_ns // 10**9:
            return False
        return True if a.st_mtime_ns == b.st_mtime_ns else None
    return stat.S_ISDIR(a.st_mode) or a.st_rdev == b.st_rdev


def _same_bytes(pa: str, pb: str) -> bool:
    fa, fb = os.open(pa, os.O_RDONLY | os.O_NOFOLLOW), os.open(pb, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while True:
            ca, cb = os.read(fa, 1 << 20), os.read(fb, 1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True
    finally:
        os.close(fa)
        os.close(fb)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


class _Planner:
    def __init__(self, current: _View, target: _View, keep: frozenset[str] = frozenset(), by_fd: bool = False,
                 budget: int | None = None):
        self.cur, self.tgt = current, target
        self.keep = keep
        self.by_fd = by_fd
        self.budget = budget
        self.plan = Plan()
        current.spend = target.spend = self.spend
        self.compare_left = COMPARE_BYTES  # reading both is far cheaper than rewriting one through the agent

    def spend(self, units: int) -> None:
        """Count work against the budget (None: no limit); past it, _OverBudget."""
        if self.budget is not None:
            self.budget -= units
            if self.budget < 0:
                raise _OverBudget

    def same(self, c: tuple[int, os.stat_result], t: tuple[int, os.stat_result], path: str) -> bool:
        """Whether the current and the target entry at ``path`` are the same file."""
        if c[0] == t[0] and c[0] != 0:
            return True  # one file of a layer both views share
        pa, pb = self.cur.at(c[0], path), self.tgt.at(t[0], path)
        found = _same_meta(c[1], t[1], pa, pb)
        if found is not None:
            return found
        if c[1].st_size > self.compare_left:
            return False
        self.compare_left -= c[1].st_size
        self.spend(c[1].st_size >> 16)
        return _same_bytes(pa, pb)

    def emit(self, rel: str, entry: tuple[int, os.stat_result], dir_layers: list[int]) -> None:
        """Write the target's ``rel`` (and, a directory, all below it) where nothing stands now."""
        layer, st = entry
        self.spend(1)
        src = self.tgt.at(layer, rel)
        op = {"path": rel, **_meta(st)}
        if stat.S_ISDIR(st.st_mode):
            self.plan.add({"op": "dir", **op})
            sub = self.tgt.dir_layers(rel, dir_layers)
            for name, child in sorted(self.tgt.children(rel, sub).items()):
                if f"{rel}/{name}" not in self.keep:
                    self.emit(f"{rel}/{name}", child, sub)
        elif stat.S_ISREG(st.st_mode):
            self.plan.bytes += st.st_size
            if self.plan.bytes > MAX_BYTES:
                raise Unplannable(f"more than {MAX_BYTES >> 20} MiB changed")
            # Only the snapshot's own layer's files go as descriptors: one of a shared layer (the
            # image, or the host's root under a host-root sandbox) is read here and sent as bytes,
            # so no descriptor of a file other sandboxes stand on ever reaches a sandbox.
            if self.by_fd and layer == 0 and st.st_size >= FD_MIN_BYTES and len(self.plan.fds) < FDS_MAX:
                self.plan.fds.append(os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC))
                self.plan.add({"op": "file", **op, "fd": len(self.plan.fds) - 1, "len": st.st_size,
                               "mtime_ns": st.st_mtime_ns})
                return
            self.spend(st.st_size >> 16)
            data = _read(src)
            self.plan.add({"op": "file", **op, "off": len(self.plan.body), "len": len(data),
                           "mtime_ns": st.st_mtime_ns})
            self.plan.body += data
        elif stat.S_ISLNK(st.st_mode):
            self.plan.add({"op": "link", **op, "target": os.readlink(src)})
        else:
            self.plan.add({"op": "node", **op, "kind": stat.S_IFMT(st.st_mode), "rdev": st.st_rdev})

    def _entries(self, rel: str, cur_layers: list[int], tgt_layers: list[int]):
        """Each name of directory ``rel`` that may differ, with its current and target entry.
        Where the two views' directories stand on the same shared layers, a name neither upper
        layer holds comes from those very layers on both sides: only the upper layers' names are
        looked at (a walk as long as the change, not as the image). Else every name is."""
        if [i for i in cur_layers if i] == [i for i in tgt_layers if i]:
            names = set(self.cur.upper_names(rel, cur_layers)) | set(self.tgt.upper_names(rel, tgt_layers))
            for name in sorted(names):
                yield name, self.cur.lookup(rel, name, cur_layers), self.tgt.lookup(rel, name, tgt_layers)
            return
        now = self.cur.children(rel, cur_layers)
        want = self.tgt.children(rel, tgt_layers)
        for name in sorted(now.keys() | want.keys()):
            yield name, now.get(name), want.get(name)

    def walk(self, rel: str, cur_layers: list[int], tgt_layers: list[int]) -> None:
        for name, c, t in self._entries(rel, cur_layers, tgt_layers):
            self.spend(1)
            path = f"{rel}/{name}" if rel else name
            if path in self.keep or (c is None and t is None):
                continue
            if t is None:
                self.plan.add({"op": "rm", "path": path})
            elif c is None:
                self.emit(path, t, tgt_layers)
            elif stat.S_ISDIR(c[1].st_mode) and stat.S_ISDIR(t[1].st_mode):
                if _meta(c[1]) != _meta(t[1]):
                    self.plan.add({"op": "dir", "path": path, **_meta(t[1])})
                sub_c, sub_t = self.cur.dir_layers(path, cur_layers), self.tgt.dir_layers(path, tgt_layers)
                if sub_c != sub_t or 0 in sub_c:  # else both are the same shared directory
                    self.walk(path, sub_c, sub_t)
            elif not self.same(c, t, path):
                self.plan.add({"op": "rm", "path": path})
                self.emit(path, t, tgt_layers)


def plan(current_upper: Path, target_upper: Path, shared: list[Path], keep: frozenset[str] = frozenset(),
         by_fd: bool = False, budget: int | None = None) -> Plan:
    """The operations that make the overlay ``current_upper`` + ``shared`` show what
    ``target_upper`` + ``shared`` shows (``shared``: the read-only layers and the image root, top
    first), leaving the paths in ``keep`` (relative, the sandbox's mount points: what is mounted
    there is not the layers') alone. ``by_fd``: the larger files go as descriptors (``Plan``).
    Raises Unplannable where the layers cannot be modelled or the change is too large, and
    _OverBudget past ``budget`` units of work (None: no limit)."""
    cur, tgt = _View([current_upper, *shared]), _View([target_upper, *shared])
    planner = _Planner(cur, tgt, keep, by_fd, budget)
    every = list(range(len(shared) + 1))
    try:
        planner.walk("", cur.dir_layers("", every), tgt.dir_layers("", every))
    except BaseException:
        planner.plan.close()
        raise
    return planner.plan


def rolls_back(handle: RuntimeHandle, snapshot: Snapshot) -> bool:
    """A filesystem snapshot of this very start of the sandbox (its lineage: the same upper layer
    over the same layers), over an image root: the host root's lower layer has mounts under it
    that the overlay does not see, so its view cannot be read from the host."""
    lineage = handle.extra.get("lineage")
    return (snapshot.mode == "filesystem" and bool(lineage) and snapshot.extra.get("lineage") == lineage
            and handle.extra.get("image_root", "/") not in ("", "/"))


async def plan_for(snapshots: SnapshotStore, handle: RuntimeHandle, snapshot: Snapshot,
                   by_fd: bool = False) -> Plan | None:
    """The plan for a sandbox of ``<sandbox dir>/upper`` over ``layers/`` over its image root, and
    a snapshot holding a copy of that upper layer; None where ``rolls_back`` says no or the layers
    cannot be planned. ``by_fd``: see ``plan``."""
    if not rolls_back(handle, snapshot):
        return None
    sandbox_dir = Path(handle.run_dir).parent
    shared = [*layer_dirs(sandbox_dir), Path(handle.extra["image_root"])]
    async with snapshots.in_use(snapshot):
        return await plan_or_none(handle, snapshot, sandbox_dir / "upper", snapshots.path(snapshot.name) / "upper",
                                  shared, by_fd=by_fd)


async def plan_or_none(handle: RuntimeHandle, snapshot: Snapshot, current_upper: Path, target_upper: Path,
                       shared: list[Path], keep: frozenset[str] = frozenset(), by_fd: bool = False) -> Plan | None:
    """``plan``, on the event loop while it stays small (``INLINE_BUDGET``), else off it; None
    (logged: the restore starts anew) where it is Unplannable."""
    try:
        try:
            return plan(current_upper, target_upper, shared, keep, by_fd, INLINE_BUDGET)
        except _OverBudget:
            return await asyncio.to_thread(plan, current_upper, target_upper, shared, keep, by_fd)
    except Unplannable as exc:
        log.info("sandbox %s: restoring %s by a new start: %s", handle.sandbox_id, snapshot.name, exc)
        return None


class RollsBackInPlace:
    """The ``Runtime`` methods of a backend whose sandboxes stand on overlay layers it keeps
    (bwrap, gVisor): a filesystem snapshot of this very start is rolled back in place through
    ``rolls_back`` and ``plan_for`` over the backend's ``snapshots``. Put before ``Runtime``
    among the bases, so these win over its defaults."""

    snapshots: SnapshotStore
    # Whether the sandbox's agent, on this machine's kernel, can take the snapshot's files as
    # descriptors passed over its socket (not where a sandbox kernel of its own stands between).
    passes_fds = False

    def rolls_back(self, handle: RuntimeHandle, snapshot: Snapshot) -> bool:
        """Whether ``rollback_plan`` can make this running sandbox's files the snapshot's in place."""
        return rolls_back(handle, snapshot)

    async def rollback_plan(self, handle: RuntimeHandle, snapshot: Snapshot) -> Plan | None:
        """The agent's plan (``reset.apply``) from the sandbox's files to the snapshot's, or None."""
        return await plan_for(self.snapshots, handle, snapshot, self.passes_fds)
