"""The in-sandbox half of E2B's envd ``filesystem.Filesystem`` service (standard library only).

Paths arrive absolute (the admin resolved ``~`` and relative ones against the user's home).
Entries carry what envd's EntryInfo needs; directory watching reports the kernel's inotify
events (inotify.py), as envd does.

Ops: envdfs.stat, envdfs.list (depth), envdfs.mkdir, envdfs.move, envdfs.remove (path[s]; a
``uid``/``gid`` given: what is created is chowned to them), envdfs.watch / envdfs.events /
envdfs.unwatch (the polling form), envdfs.watch_stream (events until the client goes away).
"""

import _queue
import os
import shutil
import stat as st

from .. import threads
from ..errors import OpError
from . import inotify

_watchers = {}
_lock = threads.Lock()
_counter = [0]
WAKE = 0.25  # how often a streaming watch looks whether its client went away
# A listing larger than this is refused: the reply must fit one frame.
MAX_ENTRIES = 40000


def _path(args, key="path"):
    path = args.get(key)
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise OpError("BadRequest", "%s must be an absolute path without NUL" % key)
    return path


def _names():
    import grp
    import pwd

    return pwd, grp


def entry(path, s=None):
    s = s or os.lstat(path)
    out = {"name": os.path.basename(path.rstrip("/")) or "/", "path": path, "size": s.st_size,
           "mode": st.S_IMODE(s.st_mode), "permissions": st.filemode(s.st_mode), "mtime": s.st_mtime,
           "type": "dir" if st.S_ISDIR(s.st_mode) else "file"}
    if st.S_ISLNK(s.st_mode):
        out["symlink"] = True
        out["target"] = os.readlink(path)
        try:
            target = os.stat(path)
            out["type"] = "dir" if st.S_ISDIR(target.st_mode) else "file"
        except OSError:
            out["type"] = "file"  # a dangling link
    pwd, grp = _names()
    try:
        out["owner"] = pwd.getpwuid(s.st_uid).pw_name
    except KeyError:
        out["owner"] = str(s.st_uid)
    try:
        out["group"] = grp.getgrgid(s.st_gid).gr_name
    except KeyError:
        out["group"] = str(s.st_gid)
    return out


def _chown(path, args):
    uid, gid = args.get("uid"), args.get("gid")
    if uid is not None and uid != os.getuid():
        os.lchown(path, int(uid), int(gid if gid is not None else -1))


def stat(req):
    return {"entry": entry(_path(req.args))}


def list_dir(req):
    root = _path(req.args)
    depth = max(1, int(req.args.get("depth") or 1))
    s = os.stat(root)
    if not st.S_ISDIR(s.st_mode):
        raise OpError("NotADirectory", "path %s is not a directory" % root)
    out = []

    def walk(path, level):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            try:
                e = entry(full)
            except OSError:  # vanished meanwhile
                continue
            out.append(e)
            if len(out) > MAX_ENTRIES:
                raise OpError("PayloadTooLarge", "%s holds more than %d entries to depth %d; list a narrower "
                                                 "path or a smaller depth" % (root, MAX_ENTRIES, depth))
            if level < depth and e["type"] == "dir" and not e.get("symlink"):
                try:
                    walk(full, level + 1)
                except OSError:
                    pass

    walk(root, 1)
    return {"entries": out}


def make_dir(req):
    path = _path(req.args)
    if os.path.lexists(path):
        raise OpError("FileExists", "directory %s already exists" % path)
    missing = []
    p = path
    while p != "/" and not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    os.makedirs(path)
    for made in missing:
        _chown(made, req.args)
    return {"entry": entry(path)}


def move(req):
    source, dest = _path(req.args, "source"), _path(req.args, "destination")
    os.lstat(source)  # a missing source is FileNotFound, naming it
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        os.makedirs(parent)
        _chown(parent, req.args)
    os.rename(source, dest)
    return {"entry": entry(dest)}


def remove(req):
    path = _path(req.args)
    s = os.lstat(path)
    if st.S_ISDIR(s.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return {}


def chown(req):
    """After a /files write: the new file (and its new parents, given) belong to the user."""
    for path in req.args.get("paths") or ():
        _chown(_path({"path": path}), req.args)
    return {}


# -- watching ----------------------------------------------------------------------------------

def _open_watch(args, sink):
    root = _path(args)
    s = os.stat(root)
    if not st.S_ISDIR(s.st_mode):
        raise OpError("NotADirectory", "path %s is not a directory" % root)
    return inotify.Watcher(root, bool(args.get("recursive")), entry if args.get("include_entry") else None, sink)


class _Pending:
    """What a polling watcher saw since its client last asked."""

    def __init__(self):
        self.lock = threads.Lock()
        self.events = []
        self.watcher = None

    def __call__(self, event):
        if event is None:
            return
        with self.lock:
            if len(self.events) < inotify.MAX_PENDING:
                self.events.append(event)
                return
        if self.watcher is not None:
            self.watcher.fail(OpError("Overflow", "more than %d events were not fetched: watch again"
                                                  % inotify.MAX_PENDING))

    def take(self):
        with self.lock:
            out, self.events = self.events, []
        return out


def watch(req):
    pending = _Pending()
    w = pending.watcher = _open_watch(req.args, pending)
    with _lock:
        _counter[0] += 1
        wid = "w%d" % _counter[0]
        _watchers[wid] = (w, pending)
    return {"watcher_id": wid}


def _watcher(args):
    found = _watchers.get(args.get("watcher_id"))
    if found is None:
        raise OpError("NotFound", "watcher %r not found" % args.get("watcher_id"))
    return found


def events(req):
    w, pending = _watcher(req.args)
    if w.error is not None:
        raise w.error
    return {"events": pending.take()}


def unwatch(req):
    w, _ = _watcher(req.args)
    with _lock:
        _watchers.pop(req.args.get("watcher_id"), None)
    w.close()
    return {}


def watch_stream(req):
    queue = _queue.SimpleQueue()
    w = _open_watch(req.args, queue.put)
    try:
        req.event("start")
        while not (req.cancelled.is_set() or req.conn.closed):
            try:
                event = queue.get(timeout=WAKE)
            except _queue.Empty:
                continue
            if event is None:
                raise w.error
            req.event("fs", {"fs": event})
    finally:
        w.close()
    return {}


OPS = {
    "envdfs.stat": stat,
    "envdfs.list": list_dir,
    "envdfs.mkdir": make_dir,
    "envdfs.move": move,
    "envdfs.remove": remove,
    "envdfs.chown": chown,
    "envdfs.watch": watch,
    "envdfs.events": events,
    "envdfs.unwatch": unwatch,
    "envdfs.watch_stream": watch_stream,
}
