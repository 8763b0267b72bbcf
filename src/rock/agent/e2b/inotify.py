"""Directory watching from the kernel's inotify events, as envd reports them (standard library only).

envd watches with fsnotify; its event kinds map from inotify's masks: IN_CREATE/IN_MOVED_TO ->
create, IN_MODIFY -> write, IN_DELETE/IN_DELETE_SELF -> remove, IN_MOVED_FROM/IN_MOVE_SELF ->
rename, IN_ATTRIB -> chmod; one kernel event with several of them gives one event each, in the
order create, rename, chmod, write, remove. Names are relative to the watched directory ("."
for the directory itself). A recursive watch adds a watch on each directory made or moved into
the tree (and reports what a new directory already holds, which ``mkdir -p`` makes before a
watch can be set), and drops those of a directory moved out.

All watchers of the agent share one inotify instance and one reader thread: instances are
limited per user on the host (128 by default), and every sandbox's agent runs as that user.
"""

import os
import select
import struct

from .. import threads
from ..errors import OpError

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x2000, 0x4000, 0x8000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
MASK = IN_CREATE | IN_MODIFY | IN_DELETE | IN_DELETE_SELF | IN_MOVED_TO | IN_MOVED_FROM | IN_MOVE_SELF | IN_ATTRIB
KINDS = ((IN_CREATE | IN_MOVED_TO, "create"), (IN_MOVED_FROM | IN_MOVE_SELF, "rename"), (IN_ATTRIB, "chmod"),
         (IN_MODIFY, "write"), (IN_DELETE | IN_DELETE_SELF, "remove"))
HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of NUL-padded name
MAX_PENDING = 100000  # events a polling watcher keeps for its client; past that it fails as envd's overflow does
# Directories one sandbox may watch at once: the host's fs.inotify.max_user_watches is shared by
# every sandbox (and the host's own services) running as that user, so one sandbox must not take it all.
MAX_WATCHES = 8192


class Hub:
    """The agent's inotify instance: watches by descriptor, each shared by the watchers that asked
    for that directory, and the thread that reads the kernel's events and hands them out."""

    def __init__(self):
        try:  # only when something is watched: the agent starts without it
            import ctypes

            self._libc = ctypes.CDLL(None, use_errno=True)
            self._libc.inotify_init1  # noqa: B018 - a libc without inotify fails here, not later
        except (ImportError, OSError, AttributeError) as exc:
            raise OpError("Unsupported", "directory watching needs ctypes and the C library's inotify, which "
                                         "this sandbox's Python cannot load: %s" % exc) from None
        self._ctypes = ctypes
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise self._error("inotify_init1", "")
        self.fd = fd
        self.lock = threads.Lock()
        self.by_wd = {}  # wd -> {watcher: the directory's path for it}
        threads.spawn(self._read)

    def _error(self, call, path):
        errno = self._ctypes.get_errno()
        if errno == 28:  # ENOSPC: the host's fs.inotify.max_user_watches
            return OpError("NoSpace", "cannot watch %s: the host's inotify watch limit "
                                      "(fs.inotify.max_user_watches) is reached" % path)
        if errno == 24:  # EMFILE: the host's fs.inotify.max_user_instances
            return OpError("NoSpace", "cannot watch: the host's inotify instance limit "
                                      "(fs.inotify.max_user_instances) is reached")
        return from_errno(errno, "%s %s" % (call, path))

    def add(self, watcher, path):
        """Watch ``path`` for ``watcher``; returns the descriptor."""
        if len(self.by_wd) >= MAX_WATCHES:
            raise OpError("NoSpace", "cannot watch %s: this sandbox already watches %d directories, the most it "
                                     "may; watch a narrower directory or stop other watches" % (path, MAX_WATCHES))
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            raise self._error("inotify_add_watch", path)
        with self.lock:
            self.by_wd.setdefault(wd, {})[watcher] = path
        return wd

    def drop(self, watcher, wd):
        with self.lock:
            users = self.by_wd.get(wd)
            if users is None or users.pop(watcher, None) is None:
                return
            if users:
                return
            del self.by_wd[wd]
        self._libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly when the kernel dropped it already

    def _read(self):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            poller.poll()
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            except OSError as exc:  # not expected of an inotify descriptor: every watcher learns of it
                self._dispatch(-1, IN_Q_OVERFLOW, str(exc))
                return
            offset = 0
            while offset + HEADER.size <= len(data):
                wd, mask, _cookie, size = HEADER.unpack_from(data, offset)
                raw = data[offset + HEADER.size:offset + HEADER.size + size].rstrip(b"\0")
                offset += HEADER.size + size
                self._dispatch(wd, mask, os.fsdecode(raw))

    def _dispatch(self, wd, mask, name):
        with self.lock:
            if mask & IN_Q_OVERFLOW:
                users = [(w, None) for ws in self.by_wd.values() for w in ws]
            else:
                users = list(self.by_wd.get(wd, {}).items())
            if mask & IN_IGNORED:  # the kernel dropped the watch: its directory is gone
                self.by_wd.pop(wd, None)
        for watcher, path in dict(users).items():
            try:
                watcher.kernel_event(wd, path, mask, name)
            except Exception as exc:  # noqa: BLE001 - one watcher's failure must not stop the others'
                watcher.fail(OpError("WatchFailed", "watching %s failed: %s" % (watcher.root, exc)))


def from_errno(errno, what):
    return OpError({2: "FileNotFound", 20: "NotADirectory", 13: "PermissionDenied"}.get(errno, "OSError"),
                   "%s: %s" % (what, os.strerror(errno)))


_hub = []
_hub_lock = threads.Lock()


def hub():
    with _hub_lock:
        if not _hub:
            _hub.append(Hub())
        return _hub[0]


class Watcher:
    """One client's watch of ``root`` (and, ``recursive``, of every directory below it). Events
    are dicts ``{name, type[, entry]}``; ``sink`` receives each one (on the hub's thread)."""

    def __init__(self, root, recursive, entry_of, sink):
        self.root, self.recursive, self.entry_of, self.sink = root, recursive, entry_of, sink
        self.error = None
        self.closed = False
        self.hub = hub()
        self.dirs = {}  # path -> wd of each directory watched for this watcher
        # held while the tree changes: the hub's thread (events) and the client's (close) both do
        self.lock = threads.Lock()
        with self.lock:
            try:
                self._add_tree(root, announce=False)
            except BaseException:
                self._close()
                raise

    def _add_tree(self, top, announce):
        """Watch ``top`` (and, recursive, the directories below it). ``announce``: report what they
        already hold as created (a directory made with its contents before its watch was set)."""
        pending = [top]
        while pending:
            path = pending.pop()
            try:
                self.dirs[path] = self.hub.add(self, path)
            except OpError as exc:
                if exc.type == "NoSpace" or path == top == self.root:
                    raise
                continue  # vanished or unreadable meanwhile: as fsnotify, skip it
            if not self.recursive:
                return
            try:
                with os.scandir(path) as it:
                    children = list(it)
            except OSError:
                continue
            for child in children:
                if announce:
                    self._emit(child.path, "create")
                try:
                    if child.is_dir(follow_symlinks=False):
                        pending.append(child.path)
                except OSError:
                    pass

    def _drop_tree(self, top):
        for path in [p for p in self.dirs if p == top or p.startswith(top + "/")]:
            self.hub.drop(self, self.dirs.pop(path))

    def _emit(self, path, kind):
        event = {"name": os.path.relpath(path, self.root), "type": kind}
        if self.entry_of is not None and kind in ("create", "write", "chmod"):
            try:
                event["entry"] = self.entry_of(path)
            except OSError:  # gone already: envd sends no entry then either
                pass
        self.sink(event)

    def kernel_event(self, wd, directory, mask, name):
        with self.lock:
            if not self.closed:
                self._event(wd, directory, mask, name)

    def _event(self, wd, directory, mask, name):
        if mask & IN_Q_OVERFLOW:
            self.fail(OpError("Overflow", "the kernel's inotify queue overflowed: events under %s were lost; "
                                          "watch again" % self.root))
            return
        if mask & (IN_IGNORED | IN_UNMOUNT):
            if self.dirs.get(directory) == wd:
                del self.dirs[directory]
            return
        is_self = not name
        if is_self and directory != self.root:
            return  # a subdirectory's own events: its parent's watch reports them (by name)
        path = os.path.join(directory, name) if name else directory
        for bits, kind in KINDS:
            if mask & bits:
                self._emit(path, kind)
        if is_self and mask & IN_MOVE_SELF:  # the watched directory moved away: as fsnotify, stop watching it
            self._drop_tree(self.root)
        if self.recursive and mask & IN_ISDIR and not is_self:
            if mask & IN_MOVED_FROM:
                self._drop_tree(path)
            elif mask & (IN_CREATE | IN_MOVED_TO):
                self._add_tree(path, announce=bool(mask & IN_CREATE))

    def fail(self, error):
        if self.error is None:
            self.error = error
        self.sink(None)

    def close(self):
        with self.lock:
            self._close()

    def _close(self):
        self.closed = True
        for wd in list(self.dirs.values()):
            self.hub.drop(self, wd)
        self.dirs.clear()
