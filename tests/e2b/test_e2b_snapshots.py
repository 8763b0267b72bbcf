"""Pause, resume, snapshots, fork and the timeout lifecycle through the E2B door: the newest
unmodified ``e2b`` SDK (scenario_snapshots.py, in its own venv) on every backend, gVisor's full
snapshots included; and on the wire what the SDK refuses before sending (fork counts), so the
server's own answers are checked too."""

from __future__ import annotations

import pytest

from tests.admin.harness import Admin, backend_params
from tests.conftest import GVISOR
from tests.e2b.conftest import TOKENS
from tests.e2b.test_e2b_sdk import e2b_python, run_scenario

A, B = {"X-API-KEY": "e2b-token-a"}, {"X-API-KEY": "e2b-token-b"}


@pytest.fixture(scope="module", params=[*backend_params(), GVISOR])
def e2b_admin(request):
    # this module's own admin, in place of the conftest's: gVisor's full snapshots too
    server = Admin(request.param, tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


@pytest.fixture
def sandbox(client):
    r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", "timeout": 120})
    assert r.status_code == 201, r.text
    yield r.json()["sandboxID"]
    client.delete(f"/sandboxes/{r.json()['sandboxID']}", headers=A)


def test_sdk_pause_snapshot_fork_lifecycle(e2b_admin, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKEND", e2b_admin.backend)
    run_scenario(e2b_python("newest"), e2b_admin, "scenario_snapshots.py", "E2B SNAPSHOTS OK", tmp_path)
    live = [r.sandbox_id for r in e2b_admin.ctx.sandboxes.records.values()
            if r.state in ("pending", "running", "paused")]
    assert live == [], live
    assert e2b_admin.call(lambda: e2b_admin.ctx.sandboxes.snapshots("team-a")) == []


def test_fork_counts_and_modes_on_the_wire(client, sandbox, e2b_admin):
    for count in (0, 21, 1000, -1, "3", True, 2.5):
        r = client.post(f"/sandboxes/{sandbox}/fork", headers=A, json={"count": count})
        assert r.status_code == 400 and "count" in r.json()["message"] and "20" in r.json()["message"], r.text
    r = client.post(f"/sandboxes/{sandbox}/snapshots", headers=A, json={"memory": "yes"})
    assert r.status_code == 400 and "memory" in r.json()["message"], r.text
    r = client.post(f"/sandboxes/{sandbox}/snapshots", headers=A, json={"name": "../../etc"})
    assert r.status_code == 400 and "name" in r.json()["message"], r.text
    r = client.post(f"/sandboxes/{sandbox}/pause", headers=A, json={"memory": 3})
    assert r.status_code == 400, r.text
    r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", "autoResume": {"enabled": True}})
    assert r.status_code == 400 and "autoPause" in r.json()["message"], r.text  # resume needs the timeout's pause
    if e2b_admin.backend != "gvisor":
        r = client.post(f"/sandboxes/{sandbox}/snapshots", headers=A, json={"memory": True})
        assert r.status_code == 400 and "gvisor" in r.json()["message"], r.text
    # nothing of these refusals touched the sandbox: it runs, unpaused, with no snapshot
    assert client.get(f"/sandboxes/{sandbox}", headers=A).json()["state"] == "running"
    assert client.get("/snapshots", headers=A).json() == []


def test_another_tenant_reaches_no_sandbox_or_snapshot(client, sandbox):
    for path in ("pause", "resume", "snapshots", "fork"):
        r = client.post(f"/sandboxes/{sandbox}/{path}", headers=B, json={})
        assert r.status_code == 404 and sandbox in r.json()["message"], (path, r.text)
    r = client.post(f"/v2/sandboxes/{sandbox}/connect", headers=B, json={})
    assert r.status_code == 404, r.text
    r = client.post(f"/sandboxes/{sandbox}/snapshots", headers=A, json={"name": "mine"})
    # a chosen name is stored per tenant (as chosen sandbox ids are): "mine.<10 hex>"
    assert r.status_code == 201 and r.json()["snapshotID"].startswith("mine."), r.text
    mine = r.json()["snapshotID"]
    assert r.json()["names"] == [mine]
    try:
        assert client.get("/snapshots", headers=B).json() == []
        assert [s["snapshotID"] for s in client.get("/snapshots", headers=A).json()] == [mine]
        assert [s["snapshotID"] for s in client.get(f"/snapshots?sandboxID={sandbox}", headers=A).json()] == [mine]
        assert client.get("/snapshots?sandboxID=other", headers=A).json() == []
        assert client.delete(f"/templates/{mine}", headers=B).status_code == 404
        r = client.post("/v2/sandboxes", headers=B, json={"templateID": mine})
        assert r.status_code == 404 and mine in r.json()["message"], r.text
        # B's own "mine" is another snapshot; A's second "mine" is a conflict, not an overwrite
        r = client.post(f"/sandboxes/{sandbox}/snapshots", headers=A, json={"name": "mine"})
        assert r.status_code == 409, r.text
        r = client.post("/v2/sandboxes", headers=B, json={"templateID": "base", "timeout": 60})
        other = r.json()["sandboxID"]
        r = client.post(f"/sandboxes/{other}/snapshots", headers=B, json={"name": "mine"})
        assert r.status_code == 201 and r.json()["snapshotID"] != mine, r.text
        assert client.delete(f"/templates/{r.json()['snapshotID']}", headers=B).status_code == 204
        client.delete(f"/sandboxes/{other}", headers=B)
    finally:
        assert client.delete(f"/templates/{mine}", headers=A).status_code == 204
    assert client.delete(f"/templates/{mine}", headers=A).status_code == 404


def test_paused_sandbox_on_the_data_plane(client, sandbox):
    info = client.post(f"/v2/sandboxes/{sandbox}/connect", headers=A, json={}).json()
    envd = {"E2b-Sandbox-Id": sandbox, "X-Access-Token": info["envdAccessToken"]}
    assert client.post(f"/sandboxes/{sandbox}/pause", headers=A, json={}).status_code == 204
    assert client.post(f"/sandboxes/{sandbox}/pause", headers=A, json={}).status_code == 409
    r = client.post("/filesystem.Filesystem/Stat", headers=envd, json={"path": "/tmp"})
    assert r.status_code == 502 and "paused" in r.json()["message"] and "was not found" in r.json()["message"], r.text
    assert client.get("/health", headers=envd).status_code == 502
    # resume (the old route answers 201 as E2B's does), then connect on a running sandbox is 200
    assert client.post(f"/sandboxes/{sandbox}/resume", headers=A, json={}).status_code == 201
    assert client.post(f"/sandboxes/{sandbox}/resume", headers=A, json={}).status_code == 409
    assert client.post("/filesystem.Filesystem/Stat", headers=envd, json={"path": "/tmp"}).status_code == 200
    assert client.post(f"/v2/sandboxes/{sandbox}/connect", headers=A, json={}).status_code == 200
    assert client.post(f"/sandboxes/{sandbox}/pause", headers=A, json={}).status_code == 204
    assert client.post(f"/v2/sandboxes/{sandbox}/connect", headers=A, json={}).status_code == 201
    # a paused sandbox can be killed (its frozen processes are thawed to end)
    assert client.post(f"/sandboxes/{sandbox}/pause", headers=A, json={}).status_code == 204
    assert client.delete(f"/sandboxes/{sandbox}", headers=A).status_code == 204
    assert client.get(f"/sandboxes/{sandbox}", headers=A).status_code == 404
