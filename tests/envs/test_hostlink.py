"""The admin's direct link to an env host (rock.envs.hostlink) against a real env host process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from rock.agent import protocol
from rock.envs.hostlink import HostLink
from rock.errors import AgentError, AgentGone

from .hostdriver import HERE, HOST_SCRIPT


@pytest.fixture
async def link(tmp_path):
    path = str(tmp_path / "eh.sock")
    proc = subprocess.Popen([sys.executable, "-I", str(HOST_SCRIPT), "--socket", path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reader = protocol.FrameReader()
    while not reader.feed(await asyncio.to_thread(os.read, proc.stdout.fileno(), 65536)):
        pass  # the ready event: the socket is listening
    link = await HostLink.connect(path)
    link.proc = proc
    yield link
    link.close()
    proc.kill()
    proc.wait()


async def make(link, name, cls="Counter", **kwargs):
    args = {"env": name, "env_id": f"test:{cls}", "entry_point": f"hostile_envs:{cls}", "sys_path": [HERE],
            "timeout": 5, "kwargs": kwargs}
    await link.call("make", args)


async def test_calls_polled_or_awaited_get_their_own_replies(link):
    await make(link, "a")
    await make(link, "b", start=10)
    polled = json.loads(await link.call("step", {"env": "a", "action": "x"}, poll=True))
    assert polled["observation"] == "n=1 a=x"
    # Many at once (never polled then): each reply reaches its own caller.
    replies = await asyncio.gather(*(link.call("step", {"env": e, "action": str(i)}, poll=True)
                                     for i, e in enumerate(["a", "b"] * 20)))
    observations = [json.loads(r)["observation"] for r in replies]
    assert observations[:2] == ["n=2 a=0", "n=11 a=1"] and observations[-1] == "n=30 a=39"
    # A big request and a big reply go through whole (many reads, many writes).
    await make(link, "big")
    body = json.loads(await link.call("step", {"env": "big", "action": "y" * 3_000_000}, poll=True))
    assert body["observation"] == "n=1 a=" + "y" * 3_000_000


async def test_errors_and_a_dead_host(link):
    with pytest.raises(AgentError) as err:
        await link.call("step", {"env": "nope", "action": "x"}, poll=True)
    assert err.value.kind == "EnvNotFound"
    await make(link, "exits", "Exits")
    with pytest.raises(AgentGone):
        await link.call("step", {"env": "exits", "action": "x"}, poll=True)
    assert link.closed
    with pytest.raises(AgentGone):
        await link.call("step", {"env": "exits", "action": "x"})


def test_frames_split_anywhere_are_put_back_together():
    """A reply may arrive in pieces of any size, several in one read."""

    link = HostLink.__new__(HostLink)
    link.calls, link.reader, link.closed = {}, protocol.FrameReader(), False
    got = []
    link._deliver = lambda meta, body: got.append((meta["id"], body))
    frames = b"".join(protocol.encode({"id": i, "ok": True}, b"x" * i * 7) for i in range(1, 6))
    for size in (1, 3, 8, 13, 50, len(frames)):
        got.clear()
        for i in range(0, len(frames), size):
            link._feed(frames[i:i + size])
        assert got == [(i, b"x" * i * 7) for i in range(1, 6)] and not link.reader._rest
