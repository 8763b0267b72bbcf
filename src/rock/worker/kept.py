"""Stopped sandboxes whose files are kept (ROCK's stop), on disk only.

A worker may keep thousands of them for a day (``auto_delete_seconds``); holding each one's
handle and spec in memory made a long-running admin grow with every sandbox it ever stopped.
Each lives as ``<records>/kept/<sandbox_id>.json`` and is read when it is restarted, committed
or removed; listing them is a directory listing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from rock.runtime.base import RuntimeHandle, SandboxSpec

log = logging.getLogger("rock.worker")


class StoppedSandboxes:
    """A mapping sandbox_id -> (handle, spec) backed by one small file per stopped sandbox."""

    def __init__(self, records_dir: Path):
        self.dir = records_dir / "kept"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, sandbox_id: str) -> Path:
        return self.dir / f"{sandbox_id}.json"

    def get(self, sandbox_id: str) -> tuple[RuntimeHandle, SandboxSpec] | None:
        """The handle and spec kept for ``sandbox_id``; None when there is none (or its file cannot be
        read)."""
        try:
            data = json.loads(self._path(sandbox_id).read_text())
            return RuntimeHandle(**data["handle"]), SandboxSpec(**data["spec"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable kept-files record of %s: %s", sandbox_id, exc)
            return None

    def __contains__(self, sandbox_id: str) -> bool:
        return self._path(sandbox_id).exists()

    def __setitem__(self, sandbox_id: str, kept: tuple[RuntimeHandle, SandboxSpec]) -> None:
        handle, spec = kept
        path = self._path(sandbox_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"sandbox_id": sandbox_id, "handle": handle.model_dump(), "spec": spec.model_dump()}))
        os.replace(tmp, path)

    def pop(self, sandbox_id: str, default=None):
        """Remove and return the kept handle and spec (``default`` when there is none)."""
        kept = self.get(sandbox_id)
        self._path(sandbox_id).unlink(missing_ok=True)
        return default if kept is None else kept

    def __iter__(self) -> Iterator[str]:
        for entry in os.scandir(self.dir):
            if entry.name.endswith(".json"):
                yield entry.name[:-5]

    def values(self) -> Iterator[tuple[RuntimeHandle, SandboxSpec]]:
        """Every kept (handle, spec), the unreadable ones left out."""
        for sandbox_id in list(self):
            kept = self.get(sandbox_id)
            if kept is not None:
                yield kept
