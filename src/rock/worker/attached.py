"""The worker of a proxy beside an admin on one machine (read/write separation on the embedded
store): it uses the admin's sandboxes and never owns one.

Both processes share the state dir. The admin's worker creates, stops and reaps; this one
attaches to a sandbox's agent (its record file in ``records/`` says where the socket is) when a
request first names it, and lets go when the agent goes away. It never removes a sandbox and
never reports one lost: the admin does both, and writes the records (the proxy reads them
from the store: HeldRecords.lookup and reread in rock.admin.sandboxes.held).
"""

from __future__ import annotations

import asyncio
import compileall
import logging

from rock.errors import Forbidden, SandboxNotFound, SandboxNotRunning
from rock.runtime.agent_boot import AGENT_SRC
from rock.runtime.base import ResourceStats
from rock.worker.agent_client import AgentClient
from rock.worker.worker import Sandbox, Worker, usable_id

log = logging.getLogger("rock.worker")


class AttachedWorker(Worker):
    """A proxy's worker: attaches to the admin's sandboxes on the shared state dir, starts and
    stops none."""

    def __init__(self, settings, backend: str | None = None):
        super().__init__(settings, backend)
        self._attaching: dict[str, asyncio.Future] = {}

    async def start(self) -> None:
        """Compile the agent, start the runtime and attach to the sandboxes the admin's records name,
        reaping nothing (what it does not know belongs to the admin)."""
        await asyncio.to_thread(compileall.compile_dir, str(AGENT_SRC), quiet=1)
        await self.runtime.start()
        await self._reattach(owner=False)  # no reap: what it does not know belongs to the admin
        log.info("worker ready (attached to the admin's sandboxes): backend=%s state=%s sandboxes=%d",
                 self.backend_name, self.settings.state_dir, len(self._sandboxes))

    async def _attach(self, sandbox_id: str) -> None:
        # Ids reach a file name here: only what the worker's own create accepts.
        if not usable_id(sandbox_id):
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}")
        path = self.records.path(sandbox_id)
        if not path.is_file():
            return
        task = self._attaching.get(sandbox_id)  # one connection, however many requests ask at once
        if task is None:
            task = self._attaching[sandbox_id] = asyncio.ensure_future(self._attach_record(path, owner=False))
            task.add_done_callback(lambda _: self._attaching.pop(sandbox_id, None))
        await asyncio.shield(task)

    async def connect(self, sandbox_id: str, node_id: str | None = None) -> AgentClient:
        """The agent connection of one of the admin's sandboxes, attached on first use;
        ``SandboxNotRunning`` when its admin has stopped it."""
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.client.closed:
            self._sandboxes.pop(sandbox_id, None)
            await self._attach(sandbox_id)
            if sandbox_id not in self._sandboxes:  # its admin stopped it since this process last looked
                raise SandboxNotRunning(f"sandbox {sandbox_id} is not running (stopped or deleted through its admin)")
        return self.agent(sandbox_id)

    async def stats(self, sandbox_id: str, node_id: str | None = None) -> ResourceStats:
        """A sandbox's resource use, attaching to it first if needed."""
        if sandbox_id not in self._sandboxes:
            await self._attach(sandbox_id)
        return await super().stats(sandbox_id, node_id)

    def _agent_lost(self, sandbox: Sandbox) -> None:
        # Stopped by its admin (or dead: the admin's own connection says so and it records why).
        if self._sandboxes.get(sandbox.sandbox_id) is sandbox:
            del self._sandboxes[sandbox.sandbox_id]

    async def stop(self, sandbox_id: str, node_id: str | None = None, keep: bool = False) -> bool:
        """Not this process's to end: let go of the connection only (the admin stops it)."""
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is not None:
            sandbox.client.close()
        return False

    async def create(self, spec, timeout: float | None = None):
        """A proxy starts nothing: a sandbox made here would outlive the proxy with no admin that
        knows it (its routes that start sandboxes are not mounted; this is the last guard)."""
        raise Forbidden(f"a proxy does not start sandboxes ({spec.sandbox_id}): send the request to the admin")
