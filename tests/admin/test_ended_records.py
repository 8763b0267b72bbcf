"""Ended sandboxes live in the store only: the admin's memory holds the live ones (and a few
recently used ended ones), while status, listing, batch, history, restart, timed deletion, the
UI, the cluster view and the metrics still see every ended sandbox, read from the store."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rock.admin.sandboxes.held import HeldRecords
from rock.admin.context import PREFIX
from tests.admin.harness import Admin, backend_params


def _ok(reply: httpx.Response):
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "Success", body
    return body["result"]


@pytest.mark.parametrize("backend", backend_params())
def test_ended_sandboxes_are_read_from_the_store(backend, monkeypatch):
    monkeypatch.setattr(HeldRecords, "ended_cache", 1)  # so that most ended records leave memory
    admin = Admin(backend).start()
    api = httpx.Client(base_url=admin.url + PREFIX, timeout=120)
    try:
        ids = [_ok(api.post("/start", json={"image": "python:3.11", "memory": "256m"}))["sandbox_id"]
               for _ in range(5)]
        running, stopped, deleted = ids[0], ids[1:3], ids[3:]
        _ok(api.post("/execute", json={"sandbox_id": stopped[0], "command": "echo kept > /root/mark"}))
        for sid in stopped:
            _ok(api.post("/stop", json={"sandbox_id": sid}))
        for sid in deleted:
            _ok(api.post("/delete", json={"sandbox_id": sid}))
        svc = admin.ctx.sandboxes
        admin.call(lambda: __import__("asyncio").sleep(0.5))  # the queued writes land; the cache trims
        assert set(svc.records) == {running}, svc.records.keys()  # memory: the live one
        assert len(svc.held._ended) <= 1
        assert set(admin.ctx.worker.stopped_ids()) == set(stopped)

        # Status, is_alive, batch and history of an ended sandbox come from the store.
        status = _ok(api.get("/get_status", params={"sandbox_id": stopped[0]}))
        assert status["lifecycle_state"] == "stopped"
        assert [h["event"] for h in status["state_history"]] == ["create", "started", "stop"]
        assert _ok(api.get("/is_alive", params={"sandbox_id": stopped[1]}))["is_alive"] is False
        gone = _ok(api.get("/get_status", params={"sandbox_id": deleted[0], "include_all_states": "true"}))
        assert gone["lifecycle_state"] == "deleted"
        assert api.get("/get_status", params={"sandbox_id": deleted[0]}).status_code == 404
        batch = _ok(api.post("/sandboxes/batch", json={"sandbox_ids": ids}))["statuses"]
        assert {s["sandbox_id"]: s["lifecycle_state"] for s in batch} == {
            running: "running", stopped[0]: "stopped", stopped[1]: "stopped", deleted[0]: "deleted",
            deleted[1]: "deleted"}
        history = _ok(api.get(f"/sandboxes/{deleted[1]}/history"))
        assert [h["event"] for h in history][-1] == "delete"

        # Listing: deleted ones only when asked for, pages over the store, oldest first.
        listed = _ok(api.get("/sandboxes"))
        assert [i["sandbox_id"] for i in listed["items"]] == [running, *stopped] and listed["total"] == 3
        page = _ok(api.get("/sandboxes", params={"page": 2, "page_size": 2}))
        assert [i["sandbox_id"] for i in page["items"]] == [stopped[1]] and page["has_more"] is False
        assert {i["sandbox_id"] for i in _ok(api.get("/sandboxes", params={"state": "deleted"}))["items"]} == set(deleted)
        far = _ok(api.get("/sandboxes", params={"page": 10**21}))  # a page past any table: empty, not a 500
        assert far["items"] == [] and far["total"] == 3 and far["has_more"] is False

        # The UI's table, overview and a sandbox's page; the cluster view; the metrics.
        ui = httpx.Client(base_url=admin.url, timeout=60)
        table = ui.get("/ui/fragments/sandboxes", params={"state": "stopped"})
        assert table.status_code == 200 and all(sid in table.text for sid in stopped) and running not in table.text
        assert ui.get("/ui/fragments/sandboxes", params={"page": 10**21}).status_code == 200  # the last page
        page = ui.get(f"/ui/sandboxes/{stopped[1]}")
        assert page.status_code == 200 and "stopped" in page.text
        overview = ui.get("/ui/fragments/overview")
        assert overview.status_code == 200 and '<p class="big" id="count-total">5</p>' in overview.text
        nodes = _ok(api.get("/cluster/status"))["nodes"]
        assert nodes[0]["sandbox_states"] == {"running": 1, "stopped": 2}
        families = list(text_string_to_metric_families(ui.get("/metrics").text))
        gauges = {tuple(sorted(s.labels.items())): s.value for f in families for s in f.samples if s.name == "rock_sandboxes"}
        # the starts (fast routes at the app's door, rock.admin.doors) are timed under their route
        starts = [s.value for f in families for s in f.samples if s.name == "rock_http_request_duration_seconds_count"
                  and s.labels.get("route") == PREFIX + "/start" and s.labels.get("status") == "200"]
        assert starts == [len(ids)], starts
        assert gauges[(("backend", backend), ("state", "stopped"))] == 2
        assert gauges[(("backend", backend), ("state", "deleted"))] == 2

        # A stopped sandbox that left memory restarts on its kept files; a stopped one is deleted.
        _ok(api.post("/restart", json={"sandbox_id": stopped[0]}))
        out = _ok(api.post("/execute", json={"sandbox_id": stopped[0], "command": "cat /root/mark"}))
        assert out["stdout"].strip() == "kept"
        _ok(api.post("/delete", json={"sandbox_id": stopped[1]}))
        assert stopped[1] not in admin.ctx.worker.stopped_ids()
        assert _ok(api.get("/get_status", params={"sandbox_id": stopped[1], "include_all_states": "true"}))[
            "lifecycle_state"] == "deleted"
        # A caller's id of an ended sandbox starts it afresh, under the same owner.
        again = _ok(api.post("/start", json={"image": "python:3.11", "memory": "256m", "sandbox_id": deleted[0]}))
        assert again["state"] == "running"
    finally:
        admin.stop(stop_sandboxes=True)


@pytest.mark.bwrap
def test_timed_deletion_finds_a_stopped_sandbox_in_the_store(monkeypatch):
    monkeypatch.setattr(HeldRecords, "ended_cache", 0)
    admin = Admin("bwrap").start()
    api = httpx.Client(base_url=admin.url + PREFIX, timeout=120)
    try:
        sid = _ok(api.post("/start", json={"image": "python:3.11", "memory": "256m", "auto_delete_seconds": 2}))[
            "sandbox_id"]
        _ok(api.post("/stop", json={"sandbox_id": sid}))
        status = _ok(api.get("/get_status", params={"sandbox_id": sid}))
        assert status["auto_delete_time"] is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _ok(api.get("/get_status", params={"sandbox_id": sid, "include_all_states": "true"}))
            if state["lifecycle_state"] == "deleted":
                break
            time.sleep(0.5)
        assert state["lifecycle_state"] == "deleted" and state["state_history"][-1]["event"] == "delete"
        assert sid not in admin.ctx.worker.stopped_ids() and sid not in admin.ctx.sandboxes.records
    finally:
        admin.stop(stop_sandboxes=True)


def test_restart_without_kept_files_is_a_conflict():
    """A stopped sandbox whose files were not kept (here: the local backend keeps none) cannot be
    restarted: a 409 saying so, not a 5xx (it was the sandbox's state, not a server failure)."""
    admin = Admin("local").start()
    api = httpx.Client(base_url=admin.url + PREFIX, timeout=120)
    try:
        sid = _ok(api.post("/start", json={"memory": "256m"}))["sandbox_id"]
        _ok(api.post("/stop", json={"sandbox_id": sid}))
        reply = api.post("/restart", json={"sandbox_id": sid})
        assert reply.status_code == 409 and "files were not kept" in reply.json()["message"], reply.text
        assert _ok(api.get("/get_status", params={"sandbox_id": sid}))["lifecycle_state"] == "stopped"
    finally:
        admin.stop(stop_sandboxes=True)


@pytest.mark.parametrize("backend", backend_params())
def test_a_proxy_beside_the_admin_reads_ended_records_from_the_store(backend, monkeypatch):
    """Read/write separation on one machine (one state dir, SQLite): the proxy holds only live
    records too; an ended sandbox's status is read from the store, and a stop through the admin
    shows through the proxy at once (not a refresh later)."""
    monkeypatch.setattr(HeldRecords, "ended_cache", 0)  # nothing ended stays in either process's memory
    admin = Admin(backend).start()
    proxy = None
    api = httpx.Client(base_url=admin.url + PREFIX, timeout=120)
    try:
        running, stopped, deleted = (_ok(api.post("/start", json={"image": "python:3.11", "memory": "256m"}))[
            "sandbox_id"] for _ in range(3))
        _ok(api.post("/stop", json={"sandbox_id": stopped}))
        _ok(api.post("/delete", json={"sandbox_id": deleted}))
        proxy = Admin(backend, state_dir=admin.state_dir, role="proxy").start()
        via = httpx.Client(base_url=proxy.url + PREFIX, timeout=120)
        assert set(proxy.ctx.sandboxes.records) == {running}
        # the admin's start routes (fast routes at its door, rock.admin.doors) are not a proxy's
        for route in ("/start", "/start_async"):
            refused = via.post(route, json={"image": "python:3.11"})
            assert refused.status_code == 404 and "no such route" in refused.json()["message"], refused.text

        assert _ok(via.get("/get_status", params={"sandbox_id": stopped}))["lifecycle_state"] == "stopped"
        assert via.get("/get_status", params={"sandbox_id": deleted}).status_code == 404
        gone = _ok(via.get("/get_status", params={"sandbox_id": deleted, "include_all_states": "true"}))
        assert gone["lifecycle_state"] == "deleted"
        refused = via.post("/execute", json={"sandbox_id": stopped, "command": "true"})
        assert refused.status_code == 409 and "stopped" in refused.json()["message"], refused.text
        assert _ok(via.post("/execute", json={"sandbox_id": running, "command": "echo via"}))["stdout"] == "via\n"

        _ok(api.post("/stop", json={"sandbox_id": running}))
        assert _ok(via.get("/get_status", params={"sandbox_id": running}))["lifecycle_state"] == "stopped"
        assert via.post("/execute", json={"sandbox_id": running, "command": "true"}).status_code == 409
        assert not proxy.ctx.sandboxes.records and not proxy.ctx.sandboxes.held._ended
        assert set(admin.ctx.worker.stopped_ids()) == {stopped, running}  # the proxy left them to the admin
    finally:
        if proxy is not None:
            proxy.stop()
        admin.stop(stop_sandboxes=True)
