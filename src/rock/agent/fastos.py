"""The parts of ``os`` that the agent's start-up path uses, taken straight from ``posix``.

Importing ``os`` costs ~1.5 ms in a fresh sandbox (most of it builds ``_collections_abc`` for
``os.environ``), and every sandbox pays that before its first command can run. Modules that
load on first use (files, procs, stats, envs) import ``os`` as usual.
"""

import posix as _posix
from posix import *  # noqa: F401,F403 - open, read, write, pipe, posix_spawnp, W*, O_* ...

# A snapshot is enough: the agent reads its environment and changes it only through ``take``.
environ = {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
           for k, v in _posix.environ.items()}


def take(name):
    """Remove ``name`` from the agent's environment, everywhere it is kept (this snapshot,
    ``posix.environ`` that ``os.environ`` is built from, ``os.environ`` if built, the process's
    own), so no process the agent starts inherits it; return its value, or None."""
    import sys

    value = environ.pop(name, None)
    _posix.environ.pop(name.encode("utf-8", "surrogateescape"), None)
    # ``os`` may be half loaded: another of the agent's threads can be importing it right now.
    # Its ``environ``, not built yet, wraps posix.environ, from which the name is gone already.
    built = getattr(sys.modules.get("os"), "environ", None)
    if built is not None:
        built.pop(name, None)
    try:
        _posix.unsetenv(name)
    except OSError:
        pass
    return value


def join(first, *rest):
    """``os.path.join`` for POSIX paths, without importing posixpath."""
    path = first
    for part in rest:
        if part.startswith("/") or not path:
            path = part
        elif path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def dirname(path):
    """``os.path.dirname`` for POSIX paths."""
    head = path[: path.rfind("/") + 1]
    return head.rstrip("/") or head


def basename(path):
    """``os.path.basename`` for POSIX paths."""
    return path[path.rfind("/") + 1 :]


def abspath(path):
    """``os.path.abspath`` for POSIX paths (``.`` and ``..`` resolved against the working directory)."""
    if not path.startswith("/"):
        path = join(_posix.getcwd(), path)
    parts = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def isdir(path):
    """``os.path.isdir``: whether ``path`` is a directory (links followed)."""
    try:
        return _posix.stat(path).st_mode & 0o170000 == 0o040000
    except OSError:
        return False


def makedirs(path, mode=0o777):
    """``os.makedirs(path, mode, exist_ok=True)``."""
    if isdir(path):
        return
    parent = dirname(path)
    if parent and parent != path:
        makedirs(parent, mode)
    try:
        _posix.mkdir(path, mode)
    except FileExistsError:
        if not isdir(path):
            raise


def exit_code(status):
    """``os.waitstatus_to_exitcode`` (Python 3.9+) for a process ``waitpid`` saw end: its exit
    status, or ``-signal`` if a signal ended it."""
    if _posix.WIFSIGNALED(status):
        return -_posix.WTERMSIG(status)
    return _posix.WEXITSTATUS(status)
