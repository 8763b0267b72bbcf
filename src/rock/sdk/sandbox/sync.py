"""``SyncSandbox``: the async ``Sandbox`` for scripts and notebooks, without ``await``; its parts
(``files``, ``commands``, ``lifecycle``, ``snapshots``, ``nohup``) block too.

Calls run on one private event loop in a background thread (shared by all SyncSandbox objects
of the process), so this works inside Jupyter, where a loop is already running.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any

from rock.sdk.background import run_sync
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from rock.sdk.sandbox.snapshots import Snapshots

if TYPE_CHECKING:
    import httpx


def _same(name: str, doc: str) -> property:
    """A read-only attribute that is the wrapped ``Sandbox``'s of the same name."""
    return property(lambda self: getattr(self._sandbox, name), doc=doc)


def _blocking(attr: Any) -> Any:
    """``attr`` itself, or, when it is a coroutine function, a function that runs it to its end."""
    if not inspect.iscoroutinefunction(attr):
        return attr

    @functools.wraps(attr)
    def call(*args: Any, **kwargs: Any) -> Any:
        return run_sync(attr(*args, **kwargs))

    return call


class Blocking:
    """A part of a ``SyncSandbox``'s sandbox (``files``, ``commands``, ``lifecycle``, ``nohup``) with
    the same methods, blocking."""

    def __init__(self, part: object) -> None:
        self._part = part

    def __getattr__(self, name: str) -> Any:
        return _blocking(getattr(self._part, name))

    def __repr__(self) -> str:
        return f"Blocking({self._part!r})"


class BlockingSnapshots(Blocking):
    """A ``SyncSandbox``'s ``snapshots``: ``Snapshots``' methods, blocking; a fork's children are
    ``SyncSandbox`` objects."""

    _part: Snapshots[Sandbox]

    def fork(self, n: int = 1, mode: str = "filesystem") -> list[SyncSandbox]:
        """``Snapshots.fork``, blocking: ``n`` running sandboxes from this one's state, as SyncSandbox."""
        return [SyncSandbox.around(child) for child in run_sync(self._part.fork(n, mode))]


class SyncSandbox:
    """Same methods as ``Sandbox`` (start, arun, read_file, download, stop, ...), blocking;
    ``transport`` as ``Sandbox`` takes it (an ``httpx.AsyncBaseTransport``: it runs on this
    client's event loop)."""

    def __init__(self, config: SandboxConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        self._compose(Sandbox(config, transport=transport))

    def _compose(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self.files = Blocking(sandbox.files)
        self.commands = Blocking(sandbox.commands)
        self.lifecycle = Blocking(sandbox.lifecycle)
        self.snapshots = BlockingSnapshots(sandbox.snapshots)
        self.nohup = Blocking(sandbox.nohup)

    @classmethod
    def around(cls, sandbox: Sandbox) -> SyncSandbox:
        """A ``SyncSandbox`` over an async ``Sandbox`` already made (a fork's child)."""
        made = cls.__new__(cls)
        made._compose(sandbox)
        return made

    sandbox_id = _same("sandbox_id", "The sandbox's id (None before ``start()``).")
    config = _same("config", "The sandbox's config.")
    host_name = _same("host_name", "The name of the machine (node) the sandbox runs on.")
    host_ip = _same("host_ip", "The address of the machine (node) the sandbox runs on.")
    url = _same("url", "The admin's sandbox API URL this client talks to.")

    def __getattr__(self, name: str) -> Any:
        return _blocking(getattr(self._sandbox, name))

    def fork(self, n: int = 1, mode: str = "filesystem") -> list[SyncSandbox]:
        """``Sandbox.fork``, blocking: ``n`` running sandboxes from this one's state, as SyncSandbox."""
        return self.snapshots.fork(n, mode)

    def __enter__(self) -> "SyncSandbox":
        if not self.sandbox_id:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Sync{self._sandbox!r}"
