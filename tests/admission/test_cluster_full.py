"""A cluster with no room now refuses a start (503 naming the resource no node has left and what
each node has free), as one node does: at once, never by holding the request in a queue until
room appears or its startup timeout ends, and without counting a sandbox twice while the nodes'
reports and the admin's own placements both hold it. The cluster's admin, store and placement are the production
code; its two nodes are the scale benchmark's SIMULATED ones (rock.cluster.simulated: they answer
for what they hold and start nothing), so the refusal is tested without Ray."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rock.admin.context import PREFIX
from tests.admin.harness import Admin

ONE = {"image": "python:3.11", "cpus": 1, "memory": "256m", "startup_timeout": 600}


@pytest.mark.bwrap
def test_a_full_cluster_refuses_a_start_at_once_naming_the_limit():
    admin = Admin("bwrap", simulated_cluster={"nodes": 2, "cpus": 2, "memory_gib": 4}).start()
    url = admin.url + PREFIX
    try:
        with httpx.Client(timeout=60) as c:  # a start held in a queue would outlast this (its timeout is 600 s)
            for _ in range(4):  # the two nodes' four cpus
                r = c.post(url + "/start", json=ONE)
                assert r.status_code == 200 and r.json()["result"]["state"] == "running", r.text
            for route in ("/start", "/start_async"):
                r = c.post(url + route, json=ONE)
                assert r.status_code == 503, r.text
                message = r.json()["message"]
                assert "no node has room now for 1 cpus" in message and "its cpus" in message, message
                assert "free now: sim-000: 0 cpus" in message and "sim-001: 0 cpus" in message, message
            # nothing more runs; a start refused after it was recorded (start_async) is recorded failed, saying why
            items = c.get(url + "/sandboxes", params={"page_size": 100}).json()["result"]["items"]
            assert sum(i["lifecycle_state"] == "running" for i in items) == 4, items
            assert all("no node has room now" in (i.get("failure_reason") or "") for i in items
                       if i["lifecycle_state"] != "running"), items
            r = c.post(url + "/start", json={**ONE, "cpus": 0.5, "memory": "64g"})
            assert r.status_code == 400, r.text  # the control: what no node could ever hold is still a 400
            # Starts that race for the last room: each is answered, placed or refused with the limit named.
            sid = next(i["sandbox_id"] for i in items if i["lifecycle_state"] == "running")
            assert c.post(url + "/delete", json={"sandbox_id": sid}).status_code == 200
            with ThreadPoolExecutor(4) as pool:
                replies = list(pool.map(lambda _: httpx.post(url + "/start", json=ONE, timeout=60), range(4)))
            assert sorted(r.status_code for r in replies) == [200, 503, 503, 503], [r.text for r in replies]
            assert all("no node has room now" in r.json()["message"] for r in replies if r.status_code == 503)
            metrics = c.get(admin.url + "/metrics").text
            assert 'rock_admission_refused_total{limit="node_cpus",status="503"}' in metrics, metrics[-1500:]
    finally:
        admin.stop()


@pytest.mark.bwrap
def test_a_start_right_after_a_stop_or_a_start_is_counted_exactly():
    """Every start and stop is followed at once by the next: the admin's count of each node is the
    nodes' own (no sandbox counted twice, none forgotten), so the last slot is given, and only it."""
    admin = Admin("bwrap", simulated_cluster={"nodes": 1, "cpus": 2, "memory_gib": 4}).start()
    url = admin.url + PREFIX
    node = admin.ctx.worker.sim_nodes["sim-000"]

    def reserved(c: httpx.Client) -> float:
        rows = c.get(url + "/cluster/status").json()["result"]["nodes"]
        assert node.reserved.cpus <= 2, node.reserved  # the node itself was never promised past its cpus
        return rows[0]["reserved"]["cpus"]

    try:
        with httpx.Client(timeout=60) as c:
            ids = []
            for held in (1, 2):  # a start right after another: placed, and counted once
                r = c.post(url + "/start", json=ONE)
                assert r.status_code == 200, r.text
                ids.append(r.json()["result"]["sandbox_id"])
                assert reserved(c) == held
            for _ in range(3):  # the slot a stop frees is given to the next start at once, and only to it
                assert c.post(url + "/delete", json={"sandbox_id": ids.pop(0)}).status_code == 200
                assert reserved(c) == 1
                r = c.post(url + "/start", json=ONE)
                assert r.status_code == 200, r.text  # not refused on a count that still holds the stopped one
                ids.append(r.json()["result"]["sandbox_id"])
                assert reserved(c) == 2
                r = c.post(url + "/start", json=ONE)  # the control: the node is full, and said so
                assert r.status_code == 503 and "no node has room now" in r.json()["message"], r.text
            assert sorted(node.held) == sorted(ids)
    finally:
        admin.stop()
