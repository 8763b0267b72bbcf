"""A worker's running sandboxes on disk: one record file each, and holding them again after a restart.

Each running sandbox is ``<records>/<sandbox_id>.json`` (its spec and runtime handle); a worker
that starts on the same state dir (an admin restart), or a proxy's attached worker beside it,
reads them and re-attaches to the sandboxes whose agents still answer. Stopped sandboxes with
kept files live beside them in ``kept/`` (``kept.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

from rock.errors import AgentGone
from rock.runtime.base import RuntimeHandle, SandboxSpec
from rock.worker.agent_client import AgentClient
from rock.worker.kept import StoppedSandboxes

log = logging.getLogger("rock.worker")


class Attached(NamedTuple):
    """A sandbox of a record file whose agent answered again: the worker holds it."""

    spec: SandboxSpec
    handle: RuntimeHandle
    client: AgentClient
    warm: bool


class RecordFiles:
    """The record files of one worker's running sandboxes, and finding them again after a restart.

    Composed into ``Worker``, which gives it all it touches: the records folder, the runtime (is a
    sandbox alive or paused, release what is left of one) and the stopped sandboxes' kept files.
    It answers with what it re-attached (``Attached``); holding a sandbox is the worker's."""

    def __init__(self, records_dir: Path, runtime, backend_name: str, kept: StoppedSandboxes):
        self.dir = records_dir
        self.runtime = runtime
        self.backend_name = backend_name
        self.kept = kept

    def path(self, sandbox_id: str) -> Path:
        """The record file of ``sandbox_id``."""
        return self.dir / f"{sandbox_id}.json"

    def paths(self) -> list[Path]:
        """Every record file, by name."""
        return sorted(self.dir.glob("*.json"))

    def save(self, sandbox) -> None:  # a worker.Sandbox
        """Write a running sandbox's record (spec, runtime handle, warm or not), replacing it atomically."""
        data = {"sandbox_id": sandbox.sandbox_id, "spec": sandbox.spec.model_dump(), "handle": sandbox.handle.model_dump(),
                "warm": sandbox.warm}
        tmp = self.path(sandbox.sandbox_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path(sandbox.sandbox_id))

    def drop(self, sandbox_id: str) -> None:
        """Remove a sandbox's record (it was stopped or is gone)."""
        self.path(sandbox_id).unlink(missing_ok=True)

    async def attach(self, path: Path, owner: bool = True) -> Attached | None:
        """The sandbox of one record file, if its agent still answers. ``owner``: this worker owns
        the state dir and releases what is left of a sandbox that is gone (an attached worker only looks)."""
        try:
            data = json.loads(path.read_text())
            handle = RuntimeHandle(**data["handle"])
            spec = SandboxSpec(**data["spec"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable sandbox record %s: %s", path, exc)
            if owner:
                path.unlink(missing_ok=True)
            return None
        if handle.backend != self.backend_name:
            log.warning("sandbox %s ran on %s, this worker uses %s: leaving it alone", spec.sandbox_id, handle.backend, self.backend_name)
            return None
        # A running record beside a kept one: a stop cut short before it dropped the running
        # record (the kept one wins). An attached worker sees both for a moment while its admin
        # restarts the sandbox, and attaches if the agent answers; only the owner drops files.
        if data.get("stopped") or (owner and spec.sandbox_id in self.kept):
            if owner:
                if data.get("stopped"):  # kept beside the running records before kept/ existed
                    self.kept[spec.sandbox_id] = (handle, spec)
                path.unlink(missing_ok=True)
            return None
        client = None
        if await self.runtime.alive(handle):
            try:
                if self.runtime.paused(handle):
                    # Frozen: its agent cannot answer a ping, and its connection is accepted once it
                    # is resumed; until then the client refuses calls (SandboxPaused).
                    handle.extra["paused"] = "1"
                    client = await AgentClient.connect(handle.socket_path, handle, paused_ok=True)
                else:
                    client = await AgentClient.connect(handle.socket_path, handle)
                    await asyncio.wait_for(client.ping(), 10)
            except (AgentGone, asyncio.TimeoutError) as exc:
                log.warning("sandbox %s runs but its agent does not answer (%s)", spec.sandbox_id, exc)
                if client is not None:
                    client.close()
                client = None
        if client is None:
            if owner:
                log.info("sandbox %s is gone; releasing what is left of it", spec.sandbox_id)
                await self.runtime.destroy(handle)
                path.unlink(missing_ok=True)
            return None
        log.info("sandbox %s %s", spec.sandbox_id, "re-attached" if owner else "attached (its admin owns it)")
        return Attached(spec, handle, client, bool(data.get("warm")))
