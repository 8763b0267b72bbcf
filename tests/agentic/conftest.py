"""Fixtures: a real admin per backend (see tests/admin/harness.py), and a sandbox with a trainer."""

from __future__ import annotations

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
