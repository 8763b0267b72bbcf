"""``SyncSandbox``: the async ``Sandbox`` for scripts and notebooks, without ``await``.

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

if TYPE_CHECKING:
    import httpx


def _same(name: str, doc: str) -> property:
    """A read-only attribute that is the wrapped ``Sandbox``'s of the same name."""
    return property(lambda self: getattr(self._sandbox, name), doc=doc)


class SyncSandbox:
    """Same methods as ``Sandbox`` (start, arun, read_file, download, stop, ...), blocking;
    ``transport`` as ``Sandbox`` takes it (an ``httpx.AsyncBaseTransport``: it runs on this
    client's event loop)."""

    def __init__(self, config: SandboxConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        self._sandbox = Sandbox(config, transport=transport)

    sandbox_id = _same("sandbox_id", "The sandbox's id (None before ``start()``).")
    config = _same("config", "The sandbox's config.")
    host_name = _same("host_name", "The name of the machine (node) the sandbox runs on.")
    host_ip = _same("host_ip", "The address of the machine (node) the sandbox runs on.")
    url = _same("url", "The admin's sandbox API URL this client talks to.")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._sandbox, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return run_sync(attr(*args, **kwargs))

        return call

    def fork(self, n: int = 1, mode: str = "filesystem") -> list["SyncSandbox"]:
        """``Sandbox.fork``, blocking: ``n`` running sandboxes from this one's state, as SyncSandbox."""
        children = []
        for child in run_sync(self._sandbox.fork(n, mode)):
            wrapped = SyncSandbox.__new__(SyncSandbox)
            wrapped._sandbox = child
            children.append(wrapped)
        return children

    def __enter__(self) -> "SyncSandbox":
        if not self.sandbox_id:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Sync{self._sandbox!r}"
