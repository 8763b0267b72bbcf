"""The SDK's one background event loop, in a daemon thread: what its blocking wrappers
(``SyncSandbox``, the sync trainer) run their coroutines on, so they work where a loop is
already running (Jupyter). Below every module that uses it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="rock-sdk-loop", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, on the SDK's background event loop thread."""
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()
