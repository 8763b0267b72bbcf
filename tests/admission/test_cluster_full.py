"""A cluster with no room now refuses a start (503 naming the resource no node has left and what
each node has free), as one node does: at once, or after the few heartbeats it takes the nodes'
reports to hold what they were just given (ROOM_WAIT_S), never by holding the request in a queue
until room appears or its startup timeout ends. The cluster's admin, store and placement are the production
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
            # nothing more runs; a start refused after the short wait for reports is recorded failed, saying why
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
