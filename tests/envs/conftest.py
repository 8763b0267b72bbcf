from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rock.worker.agent_client import AgentClient
from tests.admin.harness import admin  # noqa: F401  (a real admin per backend)

AGENT_DIR = Path(__file__).resolve().parents[2] / "src" / "rock" / "agent"


async def start_agent(tmp: Path, **env: str):
    """The real in-sandbox agent as a plain process (no isolation needed to test its env ops)."""
    sock, ready = tmp / "agent.sock", tmp / "ready"
    os.mkfifo(ready)
    fd = os.open(ready, os.O_RDWR | os.O_NONBLOCK)
    environ = dict(os.environ, ROCK_HOST_PYTHON=sys.executable, **env)
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(AGENT_DIR / "boot.py"), "--socket", str(sock),
                             "--ready", str(ready)], env=environ, stderr=subprocess.DEVNULL)
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_reader(fd, lambda: got.done() or got.set_result(os.read(fd, 64)))
    try:
        await asyncio.wait_for(got, 30)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc, await AgentClient.connect(str(sock))


def wait_gone(pids, timeout: float = 10) -> list[int]:
    """Wait (on pidfds, no polling) for processes that are not our children; return survivors."""
    import select

    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    try:
        ready, _, _ = select.select(fds, [], [], timeout) if fds else ([], [], [])
        return [fd for fd in fds if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


async def host_pids(client: AgentClient) -> list[int]:
    return [h["pid"] for h in (await client.call("env.list"))[0]["hosts"]]


@pytest.fixture
async def env_agent(tmp_path):
    proc, client = await start_agent(tmp_path, ROCK_ENV_GRACE="0.5")
    yield client
    pids = await host_pids(client) if not client.closed else []
    client.close()
    proc.kill()
    proc.wait()
    # The env hosts die with their agent (PR_SET_PDEATHSIG): nothing of ours is left behind.
    assert wait_gone(pids) == []
