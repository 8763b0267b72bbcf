"""The admin's volumes: per-tenant names, size limits, where a volume may be mounted, in-use checks.

A volume is an ext4 image under ``<state_dir>/volumes`` (``disk``), mounted on the host while the
admin runs and bound into each sandbox that names it. Rules:

- Names are the tenant's own: another tenant's volume of the same name is another volume, and one
  asked for by anyone but its owner is missing (VolumeNotFound, 404), never forbidden.
- The size is a hard limit (the filesystem's): writes past it fail with ENOSPC.
- A mount path is absolute, normalized, and not where the sandbox's own machinery lives (``/``,
  ``/proc``, ``/sys``, ``/dev``, the agent's ``/.rock``, the interpreter the agent runs on) nor
  above one of those.
- A volume a live sandbox mounts is not deleted (Conflict, 409): stop those sandboxes first.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import secrets
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from rock.admin.volumes import disk
from rock.admin.volumes.content import VolumeFiles
from rock.errors import BadRequest, Conflict, VolumeNotFound
from rock.runtime.agent_boot import SANDBOX_LIB, SANDBOX_RUN
from rock.runtime.base import VolumeBind

log = logging.getLogger("rock.admin.volumes")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MIN_SIZE = 1 << 20  # mkfs.ext4's smallest useful filesystem
MAX_SIZE = 64 << 30
DEFAULT_SIZE = 1 << 30  # E2B's create names no size
MAX_PER_OWNER = 100
_NAME = re.compile(NAME_PATTERN)
_RESERVED = ("/proc", "/sys", "/dev", posixpath.dirname(SANDBOX_LIB), SANDBOX_LIB, SANDBOX_RUN)
MOUNT_PATH_RULE = ("an absolute path such as /data, not / nor /proc, /sys, /dev, /.rock or the agent's "
                   "interpreter, nor a folder above one of those")


class Volume(BaseModel):
    """A volume as the admin keeps it (``token``: the bearer token of its content API)."""

    volume_id: str
    name: str
    owner: str | None = None
    size_bytes: int
    created_at: float = Field(default_factory=time.time)
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(24))

    def public(self) -> dict:
        """What a caller sees of the volume: id, name, size and creation time (not its owner or file)."""
        return {"volume_id": self.volume_id, "name": self.name, "size_bytes": self.size_bytes,
                "created_at": self.created_at}


def check_name(name: str) -> None:
    """Refuse (``BadRequest``) a volume name that is not 1 to 63 letters, digits, '_', '.' or '-' starting
    with a letter or digit."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"volume name {name!r}: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter "
                         "or digit")


def check_size(size_bytes: int) -> None:
    """Refuse (``BadRequest``) a size outside 1 MiB to 64 GiB."""
    if not MIN_SIZE <= size_bytes <= MAX_SIZE:
        raise BadRequest(f"volume size {size_bytes} bytes: between {MIN_SIZE} (1 MiB) and {MAX_SIZE} (64 GiB)")


def check_mount_path(path: str, protected: tuple[str, ...] = ()) -> str:
    """The normalized mount path, or a 400 naming the rule."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or len(path) > 1024:
        raise BadRequest(f"volume mount path {path!r}: {MOUNT_PATH_RULE}")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm != path.rstrip("/") or ".." in path.split("/"):
        raise BadRequest(f"volume mount path {path!r}: write it normalized (no '.', '..' or '//'), e.g. {norm!r}")
    for reserved in (*_RESERVED, *protected):
        if norm == "/" or norm == reserved or norm.startswith(reserved + "/") or reserved.startswith(norm + "/"):
            raise BadRequest(f"volume mount path {path!r}: {MOUNT_PATH_RULE}")
    return norm


class Volumes:
    """The volumes of every owner on this admin (see the module's rules). ``records``: the
    sandboxes' live records, to tell which volumes are in use."""

    def __init__(self, state_dir: Path, records: dict, live_states, python_prefix: str, local: bool = True):
        self.root = Path(state_dir) / "volumes"
        self._local = local  # the sandboxes run on this machine (not on a cluster's nodes)
        self._records, self._live = records, live_states
        self._protected = (python_prefix,) if python_prefix not in ("", "/") else ()
        self._lock = asyncio.Lock()
        self._mounted: set[Path] = set()  # what this process mounted (a proxy beside the admin mounts none)

    # -- paths and the catalog on disk ----------------------------------------------------

    def _meta(self, volume_id: str) -> Path:
        return self.root / f"{volume_id}.json"

    def _image(self, volume_id: str) -> Path:
        return self.root / f"{volume_id}.img"

    def mount_point(self, volume: Volume) -> Path:
        """Where the volume's filesystem is mounted on the host."""
        return self.root / "mnt" / volume.volume_id

    def _all(self) -> list[Volume]:
        if not self.root.is_dir():
            return []
        found = []
        for meta in sorted(self.root.glob("*.json")):
            try:
                found.append(Volume.model_validate_json(meta.read_text()))
            except (OSError, ValueError):
                log.warning("volume record %s is unreadable; skipped", meta)
        return found

    # -- what the doors call ---------------------------------------------------------------

    def list(self, owner: str | None) -> list[Volume]:
        """The owner's volumes, oldest first."""
        return sorted((v for v in self._all() if v.owner == owner), key=lambda v: v.created_at)

    def get(self, owner: str | None, name: str | None = None, volume_id: str | None = None) -> Volume:
        """The owner's volume by name or by id; ``VolumeNotFound`` otherwise (another owner's answers the
        same)."""
        for v in self._all():
            if v.owner == owner and (v.name == name if name is not None else v.volume_id == volume_id):
                return v
        raise VolumeNotFound(f"volume {name if name is not None else volume_id!r} not found")

    def by_id(self, volume_id: str) -> Volume | None:
        """Any owner's volume by id: for the content API, whose token proves the caller's right."""
        meta = self._meta(volume_id)
        if not re.fullmatch(r"vol-[0-9a-f]{32}", volume_id) or not meta.is_file():
            return None
        return Volume.model_validate_json(meta.read_text())

    async def create(self, owner: str | None, name: str, size_bytes: int | None = None) -> Volume:
        """A new volume of ``size_bytes`` (1 GiB by default) for ``owner``; its name is checked first."""
        check_name(name)
        size_bytes = DEFAULT_SIZE if size_bytes is None else size_bytes
        check_size(size_bytes)
        async with self._lock:
            mine = self.list(owner)
            if any(v.name == name for v in mine):
                raise Conflict(f"volume {name!r} already exists")
            if len(mine) >= MAX_PER_OWNER:
                raise BadRequest(f"at most {MAX_PER_OWNER} volumes per tenant: delete one first")
            volume = Volume(volume_id=f"vol-{uuid.uuid4().hex}", name=name, owner=owner, size_bytes=size_bytes)
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                await asyncio.to_thread(disk.make_image, self._image(volume.volume_id), size_bytes)
            except OSError as exc:
                raise BadRequest(f"volume {name!r} could not be made on this machine: {exc}") from None
            self._meta(volume.volume_id).write_text(volume.model_dump_json())
        return volume

    def users(self, volume: Volume) -> list[str]:
        """The live sandboxes that mount ``volume``."""
        return [r.sandbox_id for r in list(self._records.values())
                if r.owner == volume.owner and r.state in self._live
                and any(m.get("name") == volume.name for m in (r.spec or {}).get("volumes") or ())]

    async def delete(self, owner: str | None, volume: Volume) -> None:
        """Delete the volume and its files; ``Conflict`` while a running sandbox mounts it."""
        async with self._lock:
            users = self.users(volume)
            if users:
                raise Conflict(f"volume {volume.name!r} is mounted by running sandbox(es) {', '.join(users[:5])}: "
                               "stop them first")
            await asyncio.to_thread(disk.unmount, self.mount_point(volume))
            self._mounted.discard(self.mount_point(volume))
            self._meta(volume.volume_id).unlink(missing_ok=True)
            self._image(volume.volume_id).unlink(missing_ok=True)

    def mounted(self, volume: Volume) -> Path:
        """The volume's directory on the host, mounted if it was not."""
        point = self.mount_point(volume)
        try:
            disk.ensure_mounted(self._image(volume.volume_id), point)
            self._mounted.add(point)
        except OSError as exc:
            raise Conflict(f"volume {volume.name!r} cannot be mounted on this machine: {exc}") from None
        return point

    def binds(self, owner: str | None, mounts: list[dict]) -> list[VolumeBind]:
        """A start's volume mounts (``{"name", "path", "read_only"}``), checked and resolved."""
        binds, seen = [], set()
        if mounts and not self._local:
            raise BadRequest("volumes: this admin places sandboxes on a cluster's nodes, and volumes live on the "
                             "admin's machine; start the sandbox without volumes")
        for m in mounts:
            path = check_mount_path(m["path"], self._protected)
            if path in seen:
                raise BadRequest(f"volume mount path {path!r} is given twice")
            seen.add(path)
            volume = self.get(owner, name=m["name"])
            binds.append(VolumeBind(source=str(self.mounted(volume)), target=path,
                                    read_only=bool(m.get("read_only"))))
        return binds

    def content(self, volume: Volume) -> VolumeFiles:
        """The volume's files (mounted first if needed)."""
        return VolumeFiles(self.mounted(volume))

    def close(self) -> None:
        """Unmount the volumes this process mounted (the images stay; they are mounted again when
        next asked for)."""
        for point in list(self._mounted):
            disk.unmount(point)
        self._mounted.clear()
