"""The few C library calls the agent makes that Python has no function for (mount, prctl, capset),
through ``_ctypes`` alone.

Not the ``ctypes`` package: in a fresh gVisor sandbox it costs 20-26 ms to import (it pulls in
struct, ctypes._endian and more, each file read through the gofer), where ``_ctypes`` costs 4-10,
and a gVisor sandbox's agent makes these calls before it says ready. Every argument is a C
``int``, ``bytes`` (a ``const char *`` or a buffer the call only reads), ``None`` (NULL) or a
``u32``/``u64`` array (a struct of such fields, which the call may fill). Standard library only,
like the rest of the agent.
"""

import _ctypes


class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _U32(_ctypes._SimpleCData):
    _type_ = "I"


class _U64(_ctypes._SimpleCData):
    _type_ = "Q"


class _Function(_ctypes.CFuncPtr):
    # As ``CDLL(None, use_errno=True)``'s functions: errno is kept for get_errno, the result an int.
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Program:
    """The running program's symbols (``dlopen(NULL)``): the C library's among them."""

    _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)


_functions = {}


def call(name, *args):
    """Call the C library's ``name`` with ``args``; returns its int result (errno kept for ``check``)."""
    fn = _functions.get(name)
    if fn is None:
        fn = _functions[name] = _Function((name, _Program))
    return fn(*args)


def check(name, *args, what=None):
    """``call``, raising OSError with the call's errno when it returns anything but 0."""
    if call(name, *args) != 0:
        err = _ctypes.get_errno()
        import posix

        raise OSError(err, "%s: %s" % (what or name, posix.strerror(err)))


def u32(values):
    """A writable array of C ``uint32_t`` holding ``values`` (a capget's header and data)."""
    return (_U32 * len(values))(*values)


def u64(values):
    """A writable array of C ``uint64_t`` holding ``values`` (a ``struct rlimit`` on 64-bit Linux)."""
    return (_U64 * len(values))(*values)
