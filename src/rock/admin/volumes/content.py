"""Files inside one mounted volume, for the content API (E2B's ``/volumecontent``).

Runs on the host, on a directory sandboxes write: every path is walked one component at a time
from the volume's root with ``O_NOFOLLOW``, so neither ``..`` nor a symbolic link a sandbox left
there leads outside the volume. A link is reported as a link, never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from rock.errors import BadRequest, Conflict, RockError, VolumeNotFound


class VolumeFull(RockError):
    """The volume has no room left for the write (its size limit). HTTP 507."""

    status_code = 507


class PathNotFound(VolumeNotFound):
    """No such file or directory in the volume. HTTP 404."""


def _parts(path: str) -> list[str]:
    if not isinstance(path, str) or "\0" in path or len(path) > 4096:
        raise BadRequest("path: a path inside the volume, such as /data/file.txt")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"path {path!r}: '..' is not allowed in a volume path")
    return parts


def _remove_tree(dir_fd: int, name: str) -> None:
    """Remove the directory ``name`` under ``dir_fd`` and what is in it, by fds: a link inside is
    removed, never followed."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            if stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                _remove_tree(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


class VolumeFiles:
    """The files of the volume mounted at ``root`` (its paths are absolute within the volume)."""

    def __init__(self, root: Path):
        self.root = root

    @contextmanager
    def _parent(self, path: str, make: bool = False):
        """The open directory holding ``path``'s last component, and that component ('' for the root)."""
        parts = _parts(path)
        fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                if make:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                try:
                    nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    if os.path.islink(f"/proc/self/fd/{fd}/{part}"):
                        raise BadRequest(f"path {path!r} goes through a symbolic link") from None
                    raise PathNotFound(f"path {path!r} not found") from None
                os.close(fd)
                fd = nxt
            yield fd, parts[-1] if parts else ""
        finally:
            os.close(fd)

    def _entry(self, dir_fd: int, name: str, path: str) -> dict:
        try:
            st = os.stat(name or ".", dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(f"path {path!r} not found") from None
        kind = ("directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
                else "symlink" if stat.S_ISLNK(st.st_mode) else "unknown")
        entry = {"name": name or "/", "type": kind, "path": "/" + "/".join(_parts(path)),
                 "size": st.st_size, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                 "atime": _iso(st.st_atime), "mtime": _iso(st.st_mtime), "ctime": _iso(st.st_ctime)}
        if kind == "symlink":
            entry["target"] = os.readlink(name, dir_fd=dir_fd)
        return entry

    def stat(self, path: str) -> dict:
        """The entry at ``path`` (type, size, owner, mode, times)."""
        with self._parent(path) as (fd, name):
            return self._entry(fd, name, path)

    def list_dir(self, path: str, depth: int = 1) -> list[dict]:
        """The entries under directory ``path``, ``depth`` levels down (1 to 32)."""
        if not 1 <= depth <= 32:
            raise BadRequest("depth: 1 to 32")
        base = "/" + "/".join(_parts(path))
        with self._parent(path) as (fd, name):
            try:
                dfd = os.open(name or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                raise PathNotFound(f"path {path!r} not found") from None
            except OSError as exc:
                raise BadRequest(f"path {path!r} is not a directory") from exc
        try:
            return self._walk(dfd, base.rstrip("/"), depth)
        finally:
            os.close(dfd)

    def _walk(self, dfd: int, base: str, depth: int) -> list[dict]:
        out = []
        for child in sorted(os.listdir(dfd)):
            entry = self._entry(dfd, child, f"{base}/{child}")
            out.append(entry)
            if depth > 1 and entry["type"] == "directory":
                sub = os.open(child, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    out += self._walk(sub, f"{base}/{child}", depth - 1)
                finally:
                    os.close(sub)
        return out

    def make_dir(self, path: str, force: bool = False, uid=None, gid=None, mode=None) -> dict:
        """Make directory ``path`` (with its parents when ``force``), with the owner and mode given; its
        entry."""
        with self._parent(path, make=force) as (fd, name):
            if not name:
                raise Conflict("the volume's root already exists")
            try:
                os.mkdir(name, 0o755 if mode is None else mode & 0o7777, dir_fd=fd)
            except FileExistsError:
                if not force:
                    raise Conflict(f"path {path!r} already exists") from None
            except OSError as exc:
                self._raise(exc, path)
            self._own(fd, name, uid, gid, mode)
            return self._entry(fd, name, path)

    def open_file(self, path: str):
        """The file at ``path``, open for reading (the caller closes it; a large file streams)."""
        with self._parent(path) as (fd, name):
            try:
                ffd = os.open(name or ".", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFound(f"path {path!r} not found") from None
            except OSError as exc:
                raise BadRequest(f"path {path!r} is not a regular file") from exc
        f = os.fdopen(ffd, "rb")
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            f.close()
            raise BadRequest(f"path {path!r} is not a regular file")
        return f

    def write_file(self, path: str, data: bytes, uid=None, gid=None, mode=None) -> dict:
        """Write ``data`` to file ``path`` (parents made), with the owner and mode given; its entry."""
        with self._parent(path, make=True) as (fd, name):
            if not name:
                raise BadRequest("path: name a file, not the volume's root")
            try:
                ffd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            except OSError as exc:
                self._raise(exc, path)
            try:
                with os.fdopen(ffd, "wb") as f:
                    f.write(data)
            except OSError as exc:
                self._raise(exc, path)
            self._own(fd, name, uid, gid, mode)
            return self._entry(fd, name, path)

    def update(self, path: str, uid=None, gid=None, mode=None) -> dict:
        """Change the owner or mode of ``path``; its entry."""
        with self._parent(path) as (fd, name):
            self._entry(fd, name, path)  # 404 first
            self._own(fd, name, uid, gid, mode)
            return self._entry(fd, name, path)

    def remove(self, path: str) -> None:
        """Remove the file or directory at ``path`` (not the volume's root)."""
        with self._parent(path) as (fd, name):
            if not name:
                raise BadRequest("path: the volume's root is removed by deleting the volume")
            st = self._entry(fd, name, path)
            if st["type"] == "directory":
                _remove_tree(fd, name)
            else:
                os.unlink(name, dir_fd=fd)

    @staticmethod
    def _own(fd: int, name: str, uid, gid, mode) -> None:
        """Change owner and mode through the entry's own fd: a link swapped in meanwhile is refused
        (ELOOP), never followed to a file outside the volume."""
        if uid is None and gid is None and mode is None:
            return
        try:
            own = os.open(name or ".", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise BadRequest(f"{name!r}: only a file or directory has an owner and mode to change") from exc
        try:
            if uid is not None or gid is not None:
                os.fchown(own, -1 if uid is None else uid, -1 if gid is None else gid)
            if mode is not None:
                os.fchmod(own, mode & 0o7777)
        finally:
            os.close(own)

    @staticmethod
    def _raise(exc: OSError, path: str):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise VolumeFull(f"the volume is full: {path!r} does not fit in its size limit") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise PathNotFound(f"path {path!r} not found") from None
        if exc.errno in (errno.EISDIR, errno.ELOOP):
            raise BadRequest(f"path {path!r} is a directory or a symbolic link") from None
        raise exc
