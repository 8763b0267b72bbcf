"""Admission on one node: a sandbox asking for more cpus or memory than this machine has (times the
operator's overcommit) is refused at start and start_async with a 4xx naming what the node has,
before anything is recorded; within the overcommit it is accepted and runs."""

from __future__ import annotations

import os

import httpx
import pytest

from rock.admin.context import PREFIX
from tests.admin.harness import Admin

PHYS = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
CPUS = len(os.sched_getaffinity(0))


def _total(url: str) -> int:
    return httpx.get(url + PREFIX + "/sandboxes", timeout=60).json()["result"]["total"]


@pytest.mark.parametrize("route", ["/start", "/start_async"])
@pytest.mark.parametrize("memory", ["99999999g", "4096g"])
def test_more_memory_than_this_node_has_is_refused(admin, route, memory):
    before = _total(admin.url)
    reply = httpx.post(admin.url + PREFIX + route, json={"image": "python:3.11", "memory": memory}, timeout=60)
    assert reply.status_code == 400, reply.text
    message = reply.json()["message"]
    # Names what was asked and what this node has (its memory, to the hundredth of a GiB).
    assert "GiB memory; this node (" in message and f"has {PHYS / 2**30:.2f} GiB memory" in message, message
    assert f"{CPUS:g} cpus" in message, message
    assert _total(admin.url) == before  # refused before anything was recorded


@pytest.mark.parametrize("field", ["cpus", "limit_cpus"])
def test_more_cpus_than_this_node_has_is_refused(admin, field):
    reply = httpx.post(admin.url + PREFIX + "/start_async", json={"image": "python:3.11", field: CPUS + 1},
                       timeout=60)
    assert reply.status_code == 400, reply.text
    assert f"asks for {CPUS + 1:g} cpus; this node (" in reply.json()["message"]
    assert f"has {CPUS:g} cpus" in reply.json()["message"]


@pytest.mark.bwrap
def test_overcommit_lets_one_sandbox_ask_for_more_than_the_node():
    """With overcommit 2 a sandbox may ask for up to twice the node; past that still a 400."""
    admin = Admin("bwrap", overcommit=2.0).start()
    try:
        url = admin.url + PREFIX
        cpus, memory = CPUS * 1.5, f"{int(PHYS * 1.5) >> 20}m"
        reply = httpx.post(url + "/start", json={"image": "python:3.11", "cpus": cpus, "memory": memory}, timeout=120)
        assert reply.status_code == 200 and reply.json()["result"]["state"] == "running", reply.text
        sid = reply.json()["result"]["sandbox_id"]
        out = httpx.post(url + "/execute", json={"sandbox_id": sid, "command": "echo up"}, timeout=60).json()
        assert out["result"]["stdout"].strip() == "up", out
        httpx.post(url + "/delete", json={"sandbox_id": sid}, timeout=60).raise_for_status()
        reply = httpx.post(url + "/start_async", json={"image": "python:3.11", "memory": f"{(PHYS * 2 >> 20) + 1}m"},
                           timeout=60)
        assert reply.status_code == 400, reply.text
        assert "with overcommit 2 it takes up to" in reply.json()["message"], reply.text
    finally:
        admin.stop(stop_sandboxes=True)


@pytest.mark.bwrap
def test_a_start_slower_than_its_startup_timeout_fails_and_says_so():
    """Against nodes slower than the caller's startup_timeout (the scale benchmark's SIMULATED
    nodes, which answer after a set delay and start nothing), the start fails with the timeout
    named, its record says failed; one with room in its timeout runs."""
    admin = Admin("bwrap", simulated_cluster={"nodes": 2, "create_delay_ms": 4000}).start()
    try:
        url = admin.url + PREFIX
        reply = httpx.post(url + "/start", json={"image": "python:3.11", "startup_timeout": 1.5}, timeout=60)
        assert reply.status_code == 503 and "not ready within startup_timeout=1.5s" in reply.json()["message"], reply.text
        failed = httpx.get(url + "/sandboxes", params={"state": "failed"}, timeout=60).json()["result"]["items"]
        assert len(failed) == 1 and "startup_timeout=1.5s" in failed[0]["failure_reason"], failed
        reply = httpx.post(url + "/start", json={"image": "python:3.11", "startup_timeout": 30}, timeout=60)
        assert reply.status_code == 200 and reply.json()["result"]["state"] == "running", reply.text
    finally:
        admin.stop()
