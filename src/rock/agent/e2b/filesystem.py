"""The in-sandbox half of E2B's envd ``filesystem.Filesystem`` service (standard library only).

Paths arrive absolute (the admin resolved ``~`` and relative ones against the user's home).
Entries carry what envd's EntryInfo needs; directory watching polls snapshots (inotify would
need ctypes, and a watcher's client polls or streams at human pace anyway).

Ops: envdfs.stat, envdfs.list (depth), envdfs.mkdir, envdfs.move, envdfs.remove (path[s]; a
``uid``/``gid`` given: what is created is chowned to them), envdfs.watch / envdfs.events /
envdfs.unwatch (the polling form), envdfs.watch_stream (events until the client goes away).
"""

import os
import shutil
import stat as st
import threading
import time

from ..errors import OpError

_watchers = {}
_lock = threading.Lock()
_counter = [0]
POLL = 0.2
# A listing or a watched tree larger than this is refused: the reply must fit one frame, and a
# watcher re-reads its whole tree every POLL seconds.
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

def _snapshot(root, recursive):
    snap = {}

    def walk(path):
        try:
            names = os.listdir(path)
        except OSError:
            return
        for name in names:
            full = os.path.join(path, name)
            try:
                s = os.lstat(full)
            except OSError:
                continue
            snap[full] = (s.st_mtime_ns, s.st_size, st.S_IFMT(s.st_mode), s.st_ino)
            if len(snap) > MAX_ENTRIES:
                raise OpError("PayloadTooLarge", "%s holds more than %d entries: watch a narrower directory"
                                                 % (root, MAX_ENTRIES))
            if recursive and st.S_ISDIR(s.st_mode):
                walk(full)

    walk(root)
    return snap


def _diff(root, old, new, include_entry):
    events = []
    for path, sig in new.items():
        before = old.get(path)
        if before is None:
            kind = "create"
        elif before != sig and st.S_IFMT(before[2]) != st.S_IFDIR:
            kind = "write"
        else:
            continue
        event = {"name": os.path.relpath(path, root), "type": kind}
        if include_entry:
            try:
                event["entry"] = entry(path)
            except OSError:
                pass
        events.append(event)
    for path in old:
        if path not in new:
            events.append({"name": os.path.relpath(path, root), "type": "remove"})
    return events


def _open_watch(args):
    root = _path(args)
    s = os.stat(root)
    if not st.S_ISDIR(s.st_mode):
        raise OpError("NotADirectory", "path %s is not a directory" % root)
    recursive = bool(args.get("recursive"))
    return {"root": root, "recursive": recursive, "include": bool(args.get("include_entry")),
            "snap": _snapshot(root, recursive)}


def _poll(w):
    new = _snapshot(w["root"], w["recursive"])
    events = _diff(w["root"], w["snap"], new, w["include"])
    w["snap"] = new
    return events


def watch(req):
    w = _open_watch(req.args)
    with _lock:
        _counter[0] += 1
        wid = "w%d" % _counter[0]
        _watchers[wid] = w
    return {"watcher_id": wid}


def _watcher(args):
    w = _watchers.get(args.get("watcher_id"))
    if w is None:
        raise OpError("NotFound", "watcher %r not found" % args.get("watcher_id"))
    return w


def events(req):
    return {"events": _poll(_watcher(req.args))}


def unwatch(req):
    _watcher(req.args)
    with _lock:
        _watchers.pop(req.args.get("watcher_id"), None)
    return {}


def watch_stream(req):
    w = _open_watch(req.args)
    req.event("start")
    while not (req.cancelled.is_set() or req.conn.closed):
        time.sleep(POLL)
        for event in _poll(w):
            req.event("fs", {"fs": event})
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
