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

from rock.errors import AgentGone
from rock.runtime.base import RuntimeHandle, SandboxSpec
from rock.worker.agent_client import AgentClient

log = logging.getLogger("rock.worker")


class RecordFiles:
    """Mixed into ``Worker``: it has ``records_dir``, ``runtime``, ``backend_name``, ``gpus``,
    ``_stopped`` and ``_hold``."""

    def _record_path(self, sandbox_id: str) -> Path:
        return self.records_dir / f"{sandbox_id}.json"

    def _save(self, sandbox) -> None:  # a worker.Sandbox
        data = {"sandbox_id": sandbox.sandbox_id, "spec": sandbox.spec.model_dump(), "handle": sandbox.handle.model_dump(),
                "warm": sandbox.warm}
        tmp = self._record_path(sandbox.sandbox_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._record_path(sandbox.sandbox_id))

    async def _reattach(self) -> None:
        await asyncio.gather(*(self._attach_record(p) for p in sorted(self.records_dir.glob("*.json"))))

    async def _attach_record(self, path: Path, owner: bool = True) -> None:
        """Hold the sandbox of one record file again. ``owner``: this worker owns the state dir and
        releases what is left of a sandbox that is gone (an attached worker only looks)."""
        try:
            data = json.loads(path.read_text())
            handle = RuntimeHandle(**data["handle"])
            spec = SandboxSpec(**data["spec"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable sandbox record %s: %s", path, exc)
            if owner:
                path.unlink(missing_ok=True)
            return
        if handle.backend != self.backend_name:
            log.warning("sandbox %s ran on %s, this worker uses %s: leaving it alone", spec.sandbox_id, handle.backend, self.backend_name)
            return
        # A running record beside a kept one: a stop cut short before it dropped the running
        # record (the kept one wins). An attached worker sees both for a moment while its admin
        # restarts the sandbox, and attaches if the agent answers; only the owner drops files.
        if data.get("stopped") or (owner and spec.sandbox_id in self._stopped):
            if owner:
                if data.get("stopped"):  # kept beside the running records before kept/ existed
                    self._stopped[spec.sandbox_id] = (handle, spec)
                path.unlink(missing_ok=True)
            return
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
            return
        from rock.worker.worker import Sandbox  # the worker module imports this one

        self._hold(Sandbox(spec.sandbox_id, handle, client, spec, bool(data.get("warm"))))
        if owner:
            self.gpus.claim(spec.gpu_ids, spec.sandbox_id)
        log.info("sandbox %s %s", spec.sandbox_id, "re-attached" if owner else "attached (its admin owns it)")
