"""A volume's storage: an ext4 image file of the volume's size, loop-mounted on the host.

The filesystem's own size is the limit, so a write past it fails with ENOSPC in every backend
(docker and bwrap bind the mounted directory, gVisor's gofer serves it) and through the content
API alike. The image is sparse: only what is written takes disk. ``mount -o loop`` sets the loop
device to clear itself, so an unmount (even a lazy one, after the last sandbox let go) frees it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rock.runtime.mounts import detach

# No reserved blocks (root in a sandbox would get past the limit with them) and no journal (a
# small volume would spend a good part of itself on one).
_MKFS = ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "root_owner=0:0,lazy_itable_init=1"]


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise OSError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()[:300]}")


def make_image(image: Path, size_bytes: int) -> None:
    """A new, empty ext4 image of ``size_bytes``."""
    with open(image, "xb") as f:
        f.truncate(size_bytes)
    try:
        _run([*_MKFS, str(image)])
    except BaseException:
        image.unlink(missing_ok=True)
        raise


def ensure_mounted(image: Path, mount_point: Path) -> None:
    """``image`` mounted at ``mount_point`` (nothing to do if it already is): writable by every user
    of the sandboxes, as their own home directories would be, without the lost+found of a new fs."""
    if os.path.ismount(mount_point):
        return
    mount_point.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(mount_point)])
    lost = mount_point / "lost+found"
    if lost.is_dir() and not any(lost.iterdir()):
        lost.rmdir()
    os.chmod(mount_point, 0o1777)


def unmount(mount_point: Path) -> None:
    """Detach the volume's mount; a sandbox still using it keeps it until it ends (lazy)."""
    detach(mount_point)
    try:
        mount_point.rmdir()
    except OSError:
        pass
