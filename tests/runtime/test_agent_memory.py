"""Agents offer their own memory to same-page merging (KSM), and only theirs: the agent's pages
in memory are marked mergeable once it has run merge_agent_memory_after_s, a program started in
the sandbox never; off by the setting."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from rock.runtime import cgroups

pytestmark = [pytest.mark.docker, pytest.mark.bwrap]
AFTER = 2.0  # merge_agent_memory_after_s here: long enough to see the agent before it offers


def _argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode(errors="replace").split("\0")


def _mergeable_kb(pid: int) -> int:
    """Size of the process's mappings that carry the "mg" (mergeable) flag."""
    return _mergeable_sizes(pid)[0]


def _mergeable_sizes(pid: int) -> tuple[int, int]:
    """(size, resident) kB of the process's mappings that carry the "mg" (mergeable) flag."""
    total = resident = size = rss = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("VmFlags:") and "mg" in line.split()[1:]:
                total += size
                resident += rss
    return total, resident


def _agent_pid(pids: list[int]) -> int:
    # The agent is the sandbox's one Python (`python3 -I -S boot.py`, or a fork of the zygote).
    return next(p for p in pids if os.path.basename(_argv(p)[0]).startswith("python") and "-I" in _argv(p))


async def _mergeable(handle) -> tuple[int, int]:
    """(agent's mergeable kB, the sleeping command's mergeable kB), once the agent has marked them.

    The agent marks its mappings one madvise at a time, on a thread: a first non-zero reading
    may catch it half-way (228 kB was seen once), so the answer is a reading that held for 0.2 s."""
    deadline = time.monotonic() + 10 + AFTER
    last = None
    while True:
        pids = sorted(cgroups.sandbox_group(handle.backend, handle.runtime_id).pids())
        sleeper = next((p for p in pids if _argv(p)[:2] == ["sleep", "300"]), None)
        agent_kb = _mergeable_kb(_agent_pid(pids))
        if sleeper is not None and ((agent_kb and agent_kb == last) or time.monotonic() > deadline):
            return agent_kb, _mergeable_kb(sleeper)
        assert time.monotonic() < deadline, "the command did not start"
        last = agent_kb
        await asyncio.sleep(0.2 if agent_kb else 0.05)


@pytest.mark.parametrize("merge", [True, False], ids=["merge", "no-merge"])
async def test_only_the_agent_is_offered_for_merging(isolated_runtime, settings, sandboxes, new_spec, agent, merge,
                                                     known_gap):
    known_gap(isolated_runtime, "gvisor", "under gVisor the agent is a task of the sandbox's own kernel, not a host "
                                          "process: the host has no /proc entry of it, and its madvise never reaches "
                                          "the host's KSM")
    settings.merge_agent_memory = merge
    settings.merge_agent_memory_after_s = AFTER
    t0 = time.monotonic()
    handle = await sandboxes(isolated_runtime, new_spec())
    early_kb = _mergeable_kb(_agent_pid(sorted(cgroups.sandbox_group(handle.backend, handle.runtime_id).pids())))
    early_age = time.monotonic() - t0  # the agent is younger than this
    async with agent(handle) as client:
        await client.exec("sleep 300 >/dev/null 2>&1 &", shell=True)
        agent_kb, command_kb = await _mergeable(handle)
    assert command_kb == 0  # never a program of the sandbox
    if merge:
        assert agent_kb > 1024, agent_kb  # its heap, arenas, stacks, libraries' data
        # Only pages in memory are offered, not whole mappings: ksmd walks every offered page on
        # each pass for the agent's life, and whole mappings were ~12x what is in memory (thread
        # stacks, allocator reservations). Some offered pages may have been freed since.
        size_kb, resident_kb = _mergeable_sizes(_agent_pid(sorted(
            cgroups.sandbox_group(handle.backend, handle.runtime_id).pids())))
        assert size_kb < 2 * resident_kb, (size_kb, resident_kb)
        if early_age < AFTER:  # nothing offered before the agent has run that long
            assert early_kb == 0, (early_kb, early_age)
    else:
        assert agent_kb == 0 and early_kb == 0


def test_present_runs_are_the_pages_in_memory():
    """The ranges an agent offers: exactly the runs of pages in memory, found in the page map."""
    import ctypes
    import mmap

    from rock.agent.merge import _present_runs

    page = mmap.PAGESIZE
    region = mmap.mmap(-1, 64 * page)
    for i in (0, 1, 2, 10, 63):  # written: in memory; the rest never touched
        region[i * page] = 1
    start = ctypes.addressof(ctypes.c_char.from_buffer(region))
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        runs = _present_runs(pagemap, start, start + 64 * page, page)
    assert [((lo - start) // page, (hi - start) // page) for lo, hi in runs] == [(0, 3), (10, 11), (63, 64)]
