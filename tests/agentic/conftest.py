"""Fixtures: a real admin per backend (see tests/admin/harness.py), and a sandbox with a trainer."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from rock.errors import SandboxNotFound
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from tests.admin.harness import admin  # noqa: F401
from tests.sdk.test_sandbox import config


@asynccontextmanager
async def sandbox_with_trainer(admin, files: dict[str, str] | None = None):
    """A sandbox without a network (holding ``files``) and a ChatTrainer in its namespace."""
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        for path, text in (files or {}).items():
            await sandbox.write_bytes(path, text.encode())
        yield sandbox, trainer
    finally:
        await trainer.aclose()
        try:
            await sandbox.delete()
        except SandboxNotFound:
            pass


async def run_answered(sandbox, trainer, command: str, policy, timeout: float = 120, websocket: bool = False):
    """Run ``command`` in the sandbox while the trainer answers its model calls with ``policy``
    (over the exchange loop, or its WebSocket); returns the observation and the calls the policy saw."""
    run = asyncio.ensure_future(sandbox.arun(command, timeout=timeout))
    seen = []

    def answer(call):
        seen.append(call)
        return policy(call)

    served = asyncio.ensure_future(trainer.serve(answer, sandbox_ids=[sandbox.sandbox_id], wait=2,
                                                 until=lambda: run.done(), websocket=websocket))
    obs = await run
    await served
    return obs, seen
