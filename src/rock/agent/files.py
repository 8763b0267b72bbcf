"""Binary-safe file operations, and whole directories streamed as tar."""

import errno
import os
import stat as stat_mod

from .errors import OpError
from .protocol import CHUNK

MAX_READ = 64 << 20


def _path(args, key="path"):
    path = args.get(key)
    if not isinstance(path, str) or not path:
        raise OpError("BadRequest", "%s must be a non-empty string" % key)
    if "\0" in path:
        raise OpError("BadRequest", "%s must not contain NUL" % key)
    return path


def _info(path, st):
    kind = "dir" if stat_mod.S_ISDIR(st.st_mode) else "link" if stat_mod.S_ISLNK(st.st_mode) else "file" if stat_mod.S_ISREG(st.st_mode) else "other"
    return {"path": path, "name": os.path.basename(path.rstrip("/")) or "/", "type": kind, "size": st.st_size,
            "mode": stat_mod.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime}


def read(req):
    """The ``file.read`` op: bytes of a file from ``offset`` (``length`` of them, or to the end)."""
    path = _path(req.args)
    offset = int(req.args.get("offset") or 0)
    length = req.args.get("length")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if length is None and size - offset > MAX_READ:
            raise OpError("PayloadTooLarge", "%s is %d bytes; read it in ranges (offset/length) or download it" % (path, size))
        f.seek(offset)
        data = f.read(int(length) if length is not None else -1)
    return {"size": size}, data


def write(req):
    """The ``file.write`` op: write or append the body, making parent directories by default; the file's
    size."""
    path = _path(req.args)
    if req.args.get("parents", True):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
    with open(path, "ab" if req.args.get("append") else "wb") as f:
        f.write(req.body)
    if req.args.get("mode") is not None:
        os.chmod(path, int(req.args["mode"]))
    return {"size": len(req.body)}


def stat(req):
    """The ``file.stat`` op: a path's type, size, mode, owner and modification time (a link itself, not its
    target)."""
    path = _path(req.args)
    return _info(path, os.lstat(path))


def list_dir(req):
    """The ``file.list`` op: a directory's entries, by name, as ``file.stat`` describes them."""
    path = _path(req.args)
    entries = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                entries.append(_info(entry.path, entry.stat(follow_symlinks=False)))
            except OSError:
                continue
    entries.sort(key=lambda e: e["name"])
    return {"path": path, "entries": entries}


def mkdir(req):
    """The ``file.mkdir`` op: make a directory, with its parents by default."""
    path = _path(req.args)
    mode = int(req.args.get("mode") or 0o755)
    if req.args.get("parents", True):
        os.makedirs(path, mode=mode, exist_ok=True)
    else:
        os.mkdir(path, mode)
    return {}


def remove(req):
    """The ``file.remove`` op: remove a file, or a directory (``recursive`` for a non-empty one)."""
    path = _path(req.args)
    if os.path.isdir(path) and not os.path.islink(path):
        if req.args.get("recursive"):
            import shutil

            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)
    return {}


def rename(req):
    """Move ``path`` to ``target``, replacing it: how a whole upload lands at once. With
    ``keep_mode``, a target that exists keeps its permissions and owner (as a write over it would)."""
    src, dst = _path(req.args), _path(req.args, "target")
    if req.args.get("keep_mode"):
        try:
            st = os.stat(dst)
        except FileNotFoundError:
            st = None
        if st is not None and stat_mod.S_ISREG(st.st_mode):
            os.chmod(src, stat_mod.S_IMODE(st.st_mode))
            try:
                os.chown(src, st.st_uid, st.st_gid)
            except PermissionError:
                pass
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        # The target is a mount point (docker's /etc/hosts) or on another filesystem: copy the
        # bytes over it instead (not at once, but the only way to change such a file).
        import shutil

        shutil.copyfile(src, dst)
        os.unlink(src)
    return {}


def chmod(req):
    """The ``file.chmod`` op: set a path's mode."""
    os.chmod(_path(req.args), int(req.args["mode"]))
    return {}


def chown(req):
    """The ``file.chown`` op: set a path's owner and group, by id or by name."""
    a = req.args
    uid, gid = a.get("uid", -1), a.get("gid", -1)
    if a.get("user"):
        import pwd

        uid = pwd.getpwnam(a["user"]).pw_uid
    if a.get("group"):
        import grp

        gid = grp.getgrnam(a["group"]).gr_gid
    os.chown(_path(a), int(uid), int(gid), follow_symlinks=False)
    return {}


class _EventWriter:
    """A file-like sink that sends what tarfile writes as ``data`` events, in chunks."""

    def __init__(self, req):
        self.req = req
        self.buf = bytearray()

    def write(self, data):
        if self.req.cancelled.is_set():
            raise OpError("Cancelled", "download cancelled")
        self.buf += data
        while len(self.buf) >= CHUNK:
            self.req.event("data", None, bytes(self.buf[:CHUNK]))
            del self.buf[:CHUNK]
        return len(data)

    def flush(self):
        if self.buf:
            self.req.event("data", None, bytes(self.buf))
            self.buf = bytearray()


class _ChunkReader:
    """A file-like source over the chunks the client streams."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.buf = b""

    def read(self, n=-1):
        while n < 0 or len(self.buf) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buf += chunk
        if n < 0:
            data, self.buf = self.buf, b""
        else:
            data, self.buf = self.buf[:n], self.buf[n:]
        return data


def tar_get(req):
    """The ``tar.get`` op: a tar of a path, streamed as events while it is made."""
    import tarfile

    path = _path(req.args)
    os.lstat(path)
    sink = _EventWriter(req)
    with tarfile.open(fileobj=sink, mode="w|") as tar:
        tar.add(path, arcname=os.path.basename(path.rstrip("/")) or ".")
    sink.flush()
    return {}


def _inside(root, target):
    return target == root or target.startswith(root.rstrip("/") + "/")


def tar_put(req):
    """Extract a streamed tar under ``path``; refuse members that would land outside it."""
    import tarfile

    dest = os.path.realpath(_path(req.args))
    os.makedirs(dest, exist_ok=True)
    count = 0
    dirs = []
    with tarfile.open(fileobj=_ChunkReader(req.chunks()), mode="r|*") as tar:
        for member in tar:
            name = member.name
            target = os.path.realpath(os.path.join(dest, name))
            if os.path.isabs(name) or ".." in name.split("/") or not _inside(dest, target):
                raise OpError("BadRequest", "tar member %r would land outside %s" % (name, dest))
            if member.issym() or member.islnk():
                link = member.linkname
                base = os.path.dirname(target) if member.issym() else dest
                if os.path.isabs(link) or not _inside(dest, os.path.realpath(os.path.join(base, link))):
                    raise OpError("BadRequest", "tar link %r -> %r points outside %s" % (name, link, dest))
            if member.ischr() or member.isblk() or member.isfifo():
                continue
            tar.extract(member, dest, set_attrs=not member.isdir())
            if member.isdir():
                dirs.append((target, member.mode))
            count += 1
    # A directory's mode last, deepest first (as tarfile's extractall does): tarfile makes each
    # one 0700 to fill it, and a 0555 one set early could not be filled. Set-id and sticky bits
    # of a caller's archive are not kept.
    for target, mode in sorted(dirs, reverse=True):
        os.chmod(target, mode & 0o777)
    return {"files": count}


OPS = {
    "file.read": read,
    "file.write": write,
    "file.stat": stat,
    "file.list": list_dir,
    "file.mkdir": mkdir,
    "file.remove": remove,
    "file.rename": rename,
    "file.chmod": chmod,
    "file.chown": chown,
    "tar.get": tar_get,
    "tar.put": tar_put,
}
