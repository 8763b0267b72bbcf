"""The agent's spare bash: ready right after the start, closed when nobody took it for a while
(an idle sandbox keeps no bash it does not use), made again once a session found none (a sandbox
with one session starts one bash, not two)."""

from __future__ import annotations

import asyncio
import time

import pytest

from rock.errors import BadRequest
from rock.runtime import cgroups

pytestmark = [pytest.mark.docker, pytest.mark.bwrap]
# These count the sandbox's bash processes among its cgroup's host processes.
NOT_ON_THE_HOST = ("under gVisor a sandbox's processes are tasks of its own kernel: the host's cgroup holds only "
                   "runsc's sandbox and gofer, so there are no bash processes there to count")


def _bashes(handle) -> int:
    comms = []
    for pid in cgroups.sandbox_group(handle.backend, handle.runtime_id).pids():
        try:
            with open(f"/proc/{pid}/comm") as f:
                comms.append(f.read().strip())
        except OSError:
            pass
    # The agent is among them wherever a count means anything: without it (gVisor) say so now,
    # not after waiting for a count that can never change.
    assert any(c.startswith("python") for c in comms), f"the sandbox's agent is not a process of its group: {comms}"
    return comms.count("bash")


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_spare_bash_closed_when_idle_and_made_again(isolated_runtime, sandboxes, new_spec, agent, known_gap):
    known_gap(isolated_runtime, "gvisor", NOT_ON_THE_HOST)
    handle = await sandboxes(isolated_runtime, new_spec(env={"ROCK_AGENT_SPARE_IDLE": "1"}))
    await _until(lambda: _bashes(handle) == 1)  # the spare, started after the ready signal
    await _until(lambda: _bashes(handle) == 0)  # nobody took it within a second
    async with agent(handle) as client:
        await client.create_session("main")
        result = await client.run("main", "echo $((6 * 7))")
        assert result.output.strip() == "42"
        await _until(lambda: _bashes(handle) == 2)  # the session's bash and a new spare
        await _until(lambda: _bashes(handle) == 1)  # the spare closed again; the session stays
        assert (await client.run("main", "echo still")).output.strip() == "still"


async def test_a_second_spare_only_once_a_session_found_none(isolated_runtime, sandboxes, new_spec, agent, known_gap):
    known_gap(isolated_runtime, "gvisor", NOT_ON_THE_HOST)
    handle = await sandboxes(isolated_runtime, new_spec())
    async with agent(handle) as client:
        assert await client.spare_ready(timeout=10)
        await client.create_session("first")  # takes the start's spare
        # Long past the spare's refill delay: a refill after every take would be up by now.
        assert (await client.run("first", "sleep 0.3; echo $((6 * 7))")).output.strip() == "42"
        assert _bashes(handle) == 1 and not await client.spare_ready(timeout=0)
        await client.create_session("second")  # finds no spare: starts its own, and asks for more
        assert (await client.run("second", "echo two")).output.strip() == "two"
        await _until(lambda: _bashes(handle) == 3)  # both sessions' bashes and the new spare
        assert await client.spare_ready(timeout=10)
        await client.create_session("third")  # takes it, and another is made
        assert (await client.run("third", "echo three")).output.strip() == "three"
        await _until(lambda: _bashes(handle) == 4)
        assert await client.spare_ready(timeout=10)


async def test_spare_ready_says_whether_the_spare_bash_is_up(isolated_runtime, sandboxes, new_spec, agent, known_gap):
    known_gap(isolated_runtime, "gvisor", NOT_ON_THE_HOST)
    handle = await sandboxes(isolated_runtime, new_spec(env={"ROCK_AGENT_SPARE_IDLE": "1"}))
    async with agent(handle) as client:
        assert await client.spare_ready(timeout=10)  # what a warm pool waits for before a hand-out
        await _until(lambda: _bashes(handle) == 0)  # closed: nobody took it within a second
        assert not await client.spare_ready(timeout=0)
        with pytest.raises(BadRequest, match="timeout must be a number"):
            await client.call("session.spare", {"timeout": "soon"})
        await client.create_session("main")  # starts a bash of its own: the spare is not needed
        assert (await client.run("main", "echo ok")).output == "ok\n"


async def test_a_session_created_at_once_takes_the_starts_spare(isolated_runtime, sandboxes, new_spec, agent):
    """Where the agent is a fresh interpreter (docker, gVisor) its sessions load beside the first
    request (rock_agent.server.main): a session.create that comes while they load waits for them
    and the spare they start, instead of starting a bash of its own beside it. Counted inside the
    sandbox, so gVisor too."""
    handle = await sandboxes(isolated_runtime, new_spec())
    async with agent(handle) as client:
        await client.create_session("first")  # at once: no wait for the spare first
        assert (await client.run("first", "sleep 0.3; echo $((6 * 7))")).output.strip() == "42"
        counted = await client.exec(["sh", "-c", "cat /proc/[0-9]*/comm | grep -cx bash"])
        assert counted.stdout.strip() == "1", counted  # the session's bash, once the spare
        assert not await client.spare_ready(timeout=0)
