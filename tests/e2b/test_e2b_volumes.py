"""E2B's volumes: the newest unmodified ``e2b`` SDK (scenario_volumes.py, in its own venv) on
docker and bwrap, and on gVisor with one sandbox (scenario_volume_gvisor.py); and on the wire what the SDK never sends (bad names, mount paths, a missing
token, a symbolic link out of the volume), so the server's own answers are checked too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admin.harness import Admin
from tests.e2b.conftest import TOKENS
from tests.e2b.test_e2b_sdk import e2b_python, run_scenario

A, B = {"X-API-KEY": "e2b-token-a"}, {"X-API-KEY": "e2b-token-b"}


def test_sdk_volumes(e2b_admin, tmp_path):
    run_scenario(e2b_python("newest"), e2b_admin, "scenario_volumes.py", "E2B VOLUMES OK", tmp_path)
    live = [r.sandbox_id for r in e2b_admin.ctx.sandboxes.records.values() if r.state in ("pending", "running")]
    assert live == [], live
    assert e2b_admin.ctx.sandboxes.volumes.list("team-a") == []


@pytest.mark.gvisor
def test_sdk_volume_on_gvisor(tmp_path):
    server = Admin("gvisor", tokens=TOKENS).start()
    try:
        run_scenario(e2b_python("newest"), server, "scenario_volume_gvisor.py", "E2B VOLUME ONE SANDBOX OK", tmp_path)
        live = [r.sandbox_id for r in server.ctx.sandboxes.records.values() if r.state in ("pending", "running")]
        assert live == [], live
        assert server.ctx.sandboxes.volumes.list("team-a") == []
    finally:
        server.stop(stop_sandboxes=True)


@pytest.fixture
def volume(client):
    r = client.post("/volumes", headers=A, json={"name": "wire-vol"})
    assert r.status_code == 201, r.text
    yield r.json()
    client.delete(f"/volumes/{r.json()['volumeID']}", headers=A)


def test_volume_errors_are_in_e2bs_shape(client, volume):
    for body in ({}, {"name": "../x"}, {"name": ""}, {"name": 3}):
        r = client.post("/volumes", headers=A, json=body)
        assert r.status_code == 400 and set(r.json()) == {"code", "message"} and "name" in r.json()["message"], r.text
    r = client.post("/volumes", headers=A, json={"name": "wire-vol"})
    assert r.status_code == 409 and "already exists" in r.json()["message"], r.text
    assert client.get("/volumes", headers={"X-API-KEY": "nope"}).status_code == 401
    r = client.get(f"/volumes/{volume['volumeID']}", headers=B)
    assert r.status_code == 404 and r.json()["code"] == 404, r.text
    for mounts, why in (([{"name": "wire-vol", "path": "/proc"}], "mount path"),
                        ([{"name": "wire-vol", "path": "data"}], "path"),
                        ([{"name": "wire-vol"}], "path"), ("wire-vol", "volumeMounts")):
        r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", "volumeMounts": mounts})
        assert r.status_code == 400 and why in r.json()["message"], r.text
    r = client.post("/v2/sandboxes", headers=B, json={"templateID": "base",
                                                      "volumeMounts": [{"name": "wire-vol", "path": "/data"}]})
    assert r.status_code == 404 and "not found" in r.json()["message"], r.text


def test_content_api_stays_inside_the_volume(client, volume, e2b_admin):
    vid, token = volume["volumeID"], volume["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/volumecontent/{vid}/dir", params={"path": "/"}).status_code == 401
    assert client.get(f"/volumecontent/{vid}/dir", params={"path": "/"},
                      headers={"Authorization": "Bearer wrong"}).status_code == 404
    # a link a sandbox could leave in the volume, pointing at the host's files: never followed
    root = e2b_admin.ctx.sandboxes.volumes.mounted(e2b_admin.ctx.sandboxes.volumes.get("team-a", volume_id=vid))
    (root / "etc").symlink_to("/etc")
    (root / "passwd").symlink_to("/etc/passwd")
    r = client.get(f"/volumecontent/{vid}/file", params={"path": "/passwd"}, headers=bearer)
    assert r.status_code == 400 and "root:" not in r.text, r.text
    r = client.get(f"/volumecontent/{vid}/file", params={"path": "/etc/passwd"}, headers=bearer)
    assert r.status_code == 400 and "symbolic link" in r.json()["message"], r.text
    r = client.put(f"/volumecontent/{vid}/file", params={"path": "/passwd"}, headers=bearer, content=b"x")
    assert r.status_code == 400 and Path("/etc/passwd").read_text()[:5] != "x", r.text
    r = client.patch(f"/volumecontent/{vid}/path", params={"path": "/passwd"}, headers=bearer, json={"mode": 0o777})
    assert r.status_code == 400 and Path("/etc/passwd").stat().st_mode & 0o777 != 0o777, r.text
    # the control: the link itself is listed as a link, and a plain file is read
    listed = {e["name"]: e for e in client.get(f"/volumecontent/{vid}/dir", params={"path": "/"}, headers=bearer).json()}
    assert listed["passwd"]["type"] == "symlink" and listed["passwd"]["target"] == "/etc/passwd", listed
    assert client.put(f"/volumecontent/{vid}/file", params={"path": "/ok"}, headers=bearer, content=b"fine").status_code == 201
    assert client.get(f"/volumecontent/{vid}/file", params={"path": "/ok"}, headers=bearer).content == b"fine"
    # removing a folder that holds a link removes the link, not what it points at
    (root / "dir").mkdir()
    (root / "dir" / "host-etc").symlink_to("/etc")
    assert client.delete(f"/volumecontent/{vid}/path", params={"path": "/dir"}, headers=bearer).status_code == 204
    assert not (root / "dir").exists() and Path("/etc/passwd").is_file()
