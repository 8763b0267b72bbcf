"""An image rootfs as a bwrap sandbox's lower layer: where its python3 is, and bwrap's bind
targets made once in it. Paths are resolved inside the root, never on the host."""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from pathlib import Path

from rock.runtime.host_policy import host_path_refused, is_host_path


def image_python(upper: Path, lower: str, path: str) -> str | None:
    """Where ``python3`` is on ``path`` inside a root made of ``lower`` (an image rootfs), or None.

    Symlinks are followed inside that root, never on the host. A fresh sandbox's upper layer
    is empty (or not made yet), so the image decides; anything odd (whiteouts, loops) gives None
    and the agent's launcher searches for it at start instead.
    """
    if upper.is_dir() and any(upper.iterdir()):
        return None
    for d in path.split(":"):
        if d.startswith("/") and resolves_to_file(lower, f"{d.rstrip('/')}/python3"):
            return f"{d.rstrip('/')}/python3"
    return None


@functools.lru_cache(maxsize=256)
def mount_points(lower: str, paths: tuple[str, ...]) -> None:
    """Make bwrap's bind targets in an image rootfs, once: otherwise every start makes them in
    its own upper layer (seven directories through overlayfs on the state dir's disk, 15% of
    bwrap's time in a 100-start burst). A symlink or file on the way is left alone: the
    sandbox's own layer then holds the target, as before, and nothing outside the root is touched."""
    if lower == "/":
        return
    for path in paths:
        d = lower
        for part in path.strip("/").split("/"):
            d = os.path.join(d, part)
            try:
                os.mkdir(d, 0o755)
                continue
            except FileExistsError:
                pass
            if not stat.S_ISDIR(os.lstat(d).st_mode):
                break


@functools.lru_cache(maxsize=256)
def resolves_to_file(root: str, path: str, hops: int = 0) -> bool:
    """Whether ``path`` inside image root ``root`` is a file once its links are followed inside the root
    (never on the host); a cycle counts as no."""
    if hops > 16:
        return False
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts)):
        here = "/" + "/".join(parts[: i + 1])
        host = root + here
        if os.path.islink(host):
            target = os.readlink(host)
            base = "/" + "/".join(parts[:i])
            joined = target if target.startswith("/") else f"{base.rstrip('/')}/{target}"
            return resolves_to_file(root, os.path.normpath(joined + "/" + "/".join(parts[i + 1:])), hops + 1)
        if not os.path.exists(host):
            return False
    return os.path.isfile(root + "/" + "/".join(parts)) and os.access(root + "/" + "/".join(parts), os.X_OK)


async def image_lower(spec, settings) -> tuple[str, dict[str, str]]:
    """A sandbox's root as an overlay's lower layer (an unpacked image, cached by image id; ``/``
    is the host root) and the image's environment. Shared by the backends that mount their own
    root (bwrap, gvisor)."""
    image = spec.image
    if not image or is_host_path(image):
        if not settings.allow_host_paths:  # the admin refuses it first; this holds for any caller
            raise host_path_refused(image)
        if not image or os.path.isdir(image):
            return os.path.realpath(image or "/"), {}
    from rock.runtime.docker.rootfs import ImageMissing, image_rootfs  # the docker SDK only when an image is asked for
    from rock.runtime.docker.images import ensure_image

    images = settings.images_path
    auth = spec.registry_auth or {}
    pull = functools.partial(ensure_image, image, spec.pull_policy, auth.get("username"), auth.get("password"))
    named = not is_host_path(image)  # an image name: the engine gets it as the docker backend would
    if named and spec.pull_policy != "missing":
        await asyncio.to_thread(pull)
    try:
        root, env = await image_rootfs(image, images)
    except ImageMissing:  # `missing`: pulled only now, so a present image costs no extra engine call
        if not named or spec.pull_policy != "missing":
            raise
        await asyncio.to_thread(pull)
        root, env = await image_rootfs(image, images)
    return str(root), env
