"""Pause: a sandbox's processes stopped where they stand, memory kept, recorded on disk beside
the sandbox (outside its view) so that a new worker, or another handle, sees it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rock.errors import SandboxPaused

if TYPE_CHECKING:
    from rock.runtime.base import Runtime, RuntimeHandle

PAUSED_NAME = "paused"  # in the sandbox's directory (outside its view): the record that it is paused


def paused_marker(handle: "RuntimeHandle") -> Path:
    """The file whose presence says the sandbox is paused."""
    return Path(handle.run_dir).parent / PAUSED_NAME


def is_paused(handle: "RuntimeHandle") -> bool:
    """Whether the sandbox is paused, by its record on disk (true across a worker restart)."""
    return paused_marker(handle).exists()


def refuse_if_paused(handle: "RuntimeHandle", on_disk: bool = False) -> None:
    """SandboxPaused when the sandbox is paused: its agent is frozen and would not answer.
    ``on_disk``: also ask its record (another handle object, another process may have paused it)."""
    if handle.extra.get("paused") or (on_disk and is_paused(handle)):
        raise SandboxPaused(f"sandbox {handle.sandbox_id} is paused: resume it first")


async def pause(runtime: "Runtime", handle: "RuntimeHandle") -> None:
    """Freeze the sandbox (the backend's ``_freeze``) and record it, on disk and in ``handle``."""
    if not is_paused(handle):
        await runtime._freeze(handle)
        paused_marker(handle).write_text(f"{time.time():.3f}\n")
    handle.extra["paused"] = "1"


async def unpause(runtime: "Runtime", handle: "RuntimeHandle") -> None:
    """Thaw a paused sandbox and drop both records of its pause."""
    if is_paused(handle):
        await runtime._thaw(handle)
        paused_marker(handle).unlink(missing_ok=True)
    handle.extra.pop("paused", None)


@contextlib.asynccontextmanager
async def frozen(runtime: "Runtime", handle: "RuntimeHandle"):
    """The sandbox frozen for the length of the block (a paused one stays paused after it)."""
    was_paused = is_paused(handle)
    if not was_paused:
        await runtime._freeze(handle)
    try:
        yield
    finally:
        if not was_paused:
            await runtime._thaw(handle)
