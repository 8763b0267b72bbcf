"""``reset.apply``: roll the sandbox back in place, from inside it.

The worker computes what differs between the sandbox's files and a snapshot's
(``rock.runtime.rollback``) and sends it here as a list of operations with the file bodies in the
request's body, or, where the backend passes descriptors, the snapshot's larger files themselves,
opened read-only on the host: the kernel copies them here, with no transfer through the socket;
the sandbox never sees the snapshot store, and the descriptors are closed before the answer.
First every process of the sandbox but its init and this agent ends (a restore ends the commands
of the old state, as a start from the snapshot would), then the files are rewritten through the
sandbox's own root, so nothing the sandbox planted (a link) can lead a write outside it.
"""

import errno
import os
import shutil
import signal
import stat
import time

from . import sessions
from .errors import OpError
from .server import close_fds

KILL_WAIT = 5.0


def _stat(pid):
    """The fields of /proc/<pid>/stat after the command's name (state first), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _argv(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _pids():
    """The sandbox's processes but the sandbox itself: bwrap's init (pid 1), this agent, and the
    stub that holds the sandbox open (the first child of init named ``rock-stub``; one started
    later under that name is an impostor and ends like the rest)."""
    keep = {1, os.getpid()}
    others = []
    stubs = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in keep:
            continue
        pid = int(name)
        fields = _stat(pid)
        if fields is None:
            continue
        if fields[1] == b"1" and b"rock-stub" in _argv(pid):
            stubs.append(pid)
        others.append(pid)
    if stubs:
        others.remove(min(stubs))
    return others


def _live(pid):
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z"


def _end_everything():
    with sessions._lock:
        named = list(sessions._sessions.values())
        sessions._sessions.clear()
    for session in named:
        session.close()
    sessions._drop_spare(merge=False)  # a reset is no rest: a new spare follows at once
    for pid in _pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    end = time.monotonic() + KILL_WAIT
    pause = 0.0002  # a killed process is gone within a scheduling round or two: look again soon, then less often
    while True:
        left = [pid for pid in _pids() if _live(pid)]
        if not left:
            return
        if time.monotonic() > end:
            raise OpError("AgentError", "processes %s did not end within %gs" % (left[:10], KILL_WAIT))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(pause)
        pause = min(pause * 2, 0.005)


def _remove(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _owned(path, op):
    os.lchown(path, op["uid"], op["gid"])
    if op["op"] != "link":
        os.chmod(path, op["mode"])


def _copy(src, dst, size):
    """``size`` bytes of the passed descriptor ``src`` (from its start) into ``dst``, by the kernel."""
    done = 0
    while done < size:
        sent = os.sendfile(dst, src, done, size - done)
        if not sent:
            raise OSError(errno.EIO, "the snapshot's file is shorter than planned")
        done += sent


def _apply(op, body, fds):
    path = "/" + op["path"]
    kind = op["op"]
    if kind == "rm":
        _remove(path)
    elif kind == "dir":
        try:
            is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            _remove(path)
            os.mkdir(path, 0o700)
        _owned(path, op)
    elif kind == "file":
        _remove(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if "fd" in op:  # the snapshot's own file, passed by the worker: copied here without a transfer
                _copy(fds[op["fd"]], fd, op["len"])
            else:
                view = memoryview(body)[op["off"]:op["off"] + op["len"]]
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        _owned(path, op)
        os.utime(path, ns=(op["mtime_ns"], op["mtime_ns"]), follow_symlinks=False)
    elif kind == "link":
        _remove(path)
        os.symlink(op["target"], path)
        _owned(path, op)
    elif kind == "node":
        _remove(path)
        os.mknod(path, op["kind"] | op["mode"], op["rdev"])
        _owned(path, op)
    else:
        raise OpError("BadRequest", "unknown reset operation %r" % kind)


def end(req):
    """End every process of the sandbox but its init and this agent, and forget the sessions."""
    _end_everything()
    return {}


def apply(req):
    """Apply ``ops`` to the sandbox's files, in order (see the module's doc); the worker ends the
    processes first (``reset.end``) and plans from the files they left."""
    ops = req.args.get("ops")
    fds = req.args.get("fds") or []
    try:
        if not isinstance(ops, list):
            raise OpError("BadRequest", "ops must be a list")
        failed = []
        for op in ops:
            try:
                _apply(op, req.body or b"", fds)
            except (OSError, IndexError) as exc:
                failed.append("%s %s: %s" % (op.get("op"), op.get("path"), getattr(exc, "strerror", None) or exc))
    finally:
        close_fds(fds)
    # The spare bash only now, once the files are the snapshot's: started earlier it would read
    # the old state's files as it starts (its binary, libraries, locale) and keep a directory the
    # plan replaced as its cwd. Before the answer, so its start-up overlaps the answer's way back
    # and the caller's next request (which takes it).
    sessions.prewarm()
    return {"applied": len(ops) - len(failed), "failed": failed[:20]}


OPS = {"reset.end": end, "reset.apply": apply}
