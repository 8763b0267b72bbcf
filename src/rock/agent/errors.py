"""Errors an op handler raises; the server turns them into error frames."""

import errno


class OpError(Exception):
    """An op's failure as the worker sees it: ``type`` (the error's name, e.g. FileNotFound) and message."""

    def __init__(self, type_, message):
        Exception.__init__(self, message)
        self.type = type_
        self.message = message


def lookup(table, key, kind, message):
    """``table[key]``, or the OpError ``kind`` saying ``message % key`` when there is none."""
    found = table.get(key)
    if found is None:
        raise OpError(kind, message % (key,))
    return found


_ERRNO_TYPES = {
    errno.ENOENT: "FileNotFound",
    errno.EACCES: "PermissionDenied",
    errno.EPERM: "PermissionDenied",
    errno.EISDIR: "IsADirectory",
    errno.ENOTDIR: "NotADirectory",
    errno.EEXIST: "FileExists",
    errno.ENOTEMPTY: "DirectoryNotEmpty",
    errno.ENOSPC: "NoSpace",
}


def from_os_error(exc):
    """An OSError as the caller should see it: a type and a message naming the path."""
    kind = _ERRNO_TYPES.get(exc.errno, "AgentError")
    where = " (%s)" % exc.filename if exc.filename else ""
    return OpError(kind, "%s%s" % (exc.strerror or exc, where))
