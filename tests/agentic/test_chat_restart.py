"""The model endpoint across an admin restart, per backend: the sandbox's client holding a call
gets a clear 503 (not a hang) when the admin goes, and once a new admin has re-attached the
sandbox its endpoint starts again and answers."""

from __future__ import annotations

import asyncio
import json

import pytest

from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from tests.admin import harness
from tests.agentic.test_chat_faults import CALL, CLIENT, OK
from tests.sdk.test_sandbox import until


async def _output(sandbox: Sandbox, path: str) -> list:
    try:
        text = (await sandbox.read_bytes(path)).decode()
    except Exception:  # noqa: BLE001 - not written yet
        return []
    return [json.loads(x) for x in text.splitlines() if x.startswith("[")]


def _client(sandbox: Sandbox, out: str):
    return sandbox.start_process(f'"$ROCK_HOST_PYTHON" /tmp/c.py \'POST /v1/chat/completions {CALL}\' > {out} 2>&1')


@pytest.mark.parametrize("backend", harness.backend_params())
def test_an_admin_restart_fails_the_held_call_clearly_and_the_endpoint_starts_again(backend):
    first = harness.Admin(backend).start()
    second = None
    try:
        async def before():
            sandbox = Sandbox(SandboxConfig(base_url=first.url, memory="512m", cpus=1))
            await sandbox.start()
            await sandbox.write_bytes("/tmp/c.py", CLIENT.encode())
            trainer = ChatTrainer.for_sandbox(sandbox)
            await trainer.start(sandbox.sandbox_id, call_timeout=600)
            await _client(sandbox, "/tmp/held.out")
            taken = await trainer.exchange(wait=30, sandbox_ids=[sandbox.sandbox_id])
            assert [c.index for c in taken.calls] == [1]  # held by a trainer; the admin goes now
            await trainer.aclose()
            return sandbox.sandbox_id

        sandbox_id = asyncio.run(before())
        first.stop(stop_sandboxes=False)  # sandboxes keep running across admin restarts
        second = harness.Admin(backend, state_dir=first.state_dir).start()

        async def after():
            sandbox = Sandbox(SandboxConfig(base_url=second.url, memory="512m", cpus=1))
            await sandbox.attach(sandbox_id)
            held = await until(lambda: _output(sandbox, "/tmp/held.out"), timeout=60)
            assert held[0][0] == 503 and "went away" in held[0][1]["error"]["message"], held
            trainer = ChatTrainer.for_sandbox(sandbox)
            try:
                await trainer.start(sandbox_id)  # the port was freed with the old endpoint
                await _client(sandbox, "/tmp/again.out")
                taken = await trainer.exchange(wait=30, sandbox_ids=[sandbox_id])
                await trainer.answer(sandbox_id, taken.calls[0].index, OK)
                again = await until(lambda: _output(sandbox, "/tmp/again.out"), timeout=60)
                assert again[0][0] == 200 and again[0][1]["choices"][0]["message"]["content"] == "fine"
            finally:
                await trainer.aclose()

        asyncio.run(after())
    finally:
        (second or first).stop(stop_sandboxes=True)
