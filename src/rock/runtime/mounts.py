"""mount(2) and lazy unmounts through libc, for the bwrap backend's overlays (no util-linux needed)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
MS_PRIVATE = 1 << 18
MS_RDONLY = 1
MNT_DETACH = 2


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2) through libc; ``OSError`` naming the target on failure."""
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or ''} on {target}: {os.strerror(err)}")


def detach(target: Path) -> None:
    """Lazily unmount ``target`` if it is a mount point (umount2 with MNT_DETACH)."""
    if os.path.ismount(target):
        _libc.umount2(str(target).encode(), MNT_DETACH)


def mount_overlay(sandbox_dir: Path, lower: str) -> None:
    """``<sandbox_dir>/root``: an overlay of ``upper`` (the sandbox's files) over its read-only
    layers, if it stands on a snapshot's (``rock.runtime.layers``), over ``lower``."""
    from rock.runtime.layers import layer_dirs

    upper, work, merged = sandbox_dir / "upper", sandbox_dir / "ovl-work", sandbox_dir / "root"
    for d in (upper, work, merged):
        d.mkdir(exist_ok=True)
    # Overlay options cannot quote ',' or ':'; a path through an open fd has neither.
    lowers = [*layer_dirs(sandbox_dir), lower]
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in (*lowers, upper, work)]
    try:
        paths = [f"/proc/self/fd/{fd}" for fd in fds]
        low, up, wk = ":".join(paths[:-2]), paths[-2], paths[-1]
        mount("overlay", str(merged), "overlay", 0, f"lowerdir={low},upperdir={up},workdir={wk}")
    finally:
        for fd in fds:
            os.close(fd)
    mount("none", str(merged), None, MS_PRIVATE, None)
