"""What a sandbox may be given of the host (its files as an image, its network), what a backend
needs of the host to run at all, and the key an owner's sandboxes are grouped under there."""

from __future__ import annotations

import hashlib
import os
import shutil

from rock.errors import BadRequest


def owner_key(owner: str) -> str:
    """The short key of an owner's sandboxes: cgroups are ``rock/<owner key>/<id>``."""
    return hashlib.sha256(owner.encode()).hexdigest()[:12]


def is_host_path(image: str | None) -> bool:
    """An image that names the host's own files: '/' (the host root) or an absolute path to a
    root filesystem directory or tar. A relative name is always an image name, never a path
    looked up in the server's working directory."""
    return bool(image) and image.startswith("/")


def host_path_refused(image: str | None) -> BadRequest:
    """The refusal of a host path as an image, saying which setting allows it."""
    what = "the host's own root filesystem" if not image or image.rstrip("/") == "" else "a path on the host"
    return BadRequest(f"image {image or '/'!r} is {what}: a sandbox of it would see the host's files, and this server "
                      "does not allow that; use an image name (e.g. python:3.11). An operator may allow host paths as "
                      "images with the setting allow_host_paths (ROCK_ALLOW_HOST_PATHS=true)")


def host_network_refused(backend: str = "bwrap") -> BadRequest:
    """The refusal of the host's network namespace for a sandbox of ``backend`` (one whose runtime
    declares ``host_network``), saying which setting allows it."""
    return BadRequest(f"network=true on the {backend} backend shares the host's network namespace: the sandbox would "
                      "reach every service on the host's loopback. Use the docker backend for sandboxes with a "
                      "network; an operator may allow it with the setting allow_host_network "
                      "(ROCK_ALLOW_HOST_NETWORK=true)")


def unusable_reason(tool: str, missing: str, why_root: str) -> str | None:
    """Why a backend that runs ``tool`` as root over our own cgroups cannot run here, or None."""
    from rock.runtime import cgroups

    if not shutil.which(tool):
        return missing
    if os.geteuid() != 0:
        return why_root
    if not cgroups.is_v2() and not cgroups.v1_mounts():
        return "no cgroup hierarchy is mounted"
    return None
