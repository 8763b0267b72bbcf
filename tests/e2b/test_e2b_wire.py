"""The E2B routes on the wire, for what the SDK cannot send: bad tokens, unknown sandboxes and
templates, refused fields, codecs we do not serve, and input that must never reach the host."""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import uuid

import httpx
import pytest


A, B = {"X-API-KEY": "e2b-token-a"}, {"X-API-KEY": "e2b-token-b"}


def envelope(obj) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">BI", 0, len(data)) + data


def frames(raw: bytes) -> list[tuple[int, dict]]:
    out, pos = [], 0
    while pos < len(raw):
        flags, size = struct.unpack_from(">BI", raw, pos)
        out.append((flags, json.loads(raw[pos + 5:pos + 5 + size])))
        pos += 5 + size
    return out


@pytest.fixture
def sandbox(client):
    r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", "timeout": 120, "metadata": {"w": "1"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["envdVersion"] == "0.5.7" and body["clientID"] and body["envdAccessToken"], body
    yield body
    client.delete(f"/sandboxes/{body['sandboxID']}", headers=A)


def envd(sandbox: dict, **extra) -> dict:
    return {"E2b-Sandbox-Id": sandbox["sandboxID"], "E2b-Sandbox-Port": "49983",
            "X-Access-Token": sandbox["envdAccessToken"], **extra}


def test_control_plane_refusals(client):
    for headers in ({}, {"X-API-KEY": "wrong"}):
        r = client.post("/v2/sandboxes", headers=headers, json={"templateID": "base"})
        assert r.status_code == 401 and r.json()["code"] == 401 and "API key" in r.json()["message"], r.text
    r = client.post("/v2/sandboxes", headers=A, json={"templateID": "no-such"})
    assert r.status_code == 404 and "no-such" in r.json()["message"], r.text
    # the template table is the only way to an image: a path or an image name is just an unknown template
    for template in ("../../../bin/sh", "python:3.11", "$(touch /tmp/pwned)"):
        r = client.post("/v2/sandboxes", headers=A, json={"templateID": template})
        assert r.status_code == 404, r.text
    assert not os.path.exists("/tmp/pwned")
    for field, value in (("autoPause", "yes"), ("autoResume", {"enabled": True}), ("network", {"egressProxy": {"address": "x.test:1080", "tls": True}}),
                         ("network", {"rules": {"10.0.0.1": [{"transform": {"headers": {"X": "y"}}}]}}),
                         ("network", {"rules": {"a.test": [{"transform": {"headers": {"X": "a\r\nB: c"}}}]}}),
                         ("mcp", {"x": {}})):
        r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", field: value})
        assert r.status_code == 400 and field in r.json()["message"], r.text
    r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", "network": {"egressProxy": {"address": "127.0.0.1:1080"}}})
    assert r.status_code == 400 and "proxy" in r.json()["message"] and "127.0.0.1" in r.json()["message"], r.text
    r = client.post("/v2/sandboxes", headers=A, json={"templateID": "base", "volumeMounts": [{"name": "v", "path": "/data"}]})
    assert r.status_code == 404 and "volume 'v' not found" in r.json()["message"], r.text  # tests/e2b/test_e2b_volumes.py
    for body in ({"templateID": "base", "timeout": -1}, {"templateID": "base", "metadata": {"k": 1}}, [1], {}):
        r = client.post("/v2/sandboxes", headers=A, json=body)
        assert r.status_code == 400 and r.json()["message"], r.text
    missing = uuid.uuid4().hex
    for method, path in (("GET", f"/sandboxes/{missing}"), ("DELETE", f"/sandboxes/{missing}"),
                         ("POST", f"/sandboxes/{missing}/timeout"), ("POST", f"/v2/sandboxes/{missing}/connect"),
                         ("GET", f"/sandboxes/{missing}/metrics")):
        r = client.request(method, path, headers=A, json={"timeout": 10})
        assert r.status_code == 404 and r.json()["code"] == 404, (method, path, r.text)


def test_another_token_sees_nothing(client, sandbox):
    sid = sandbox["sandboxID"]
    assert client.get(f"/sandboxes/{sid}", headers=B).status_code == 404
    assert client.delete(f"/sandboxes/{sid}", headers=B).status_code == 404
    assert client.get("/v2/sandboxes", headers=B).json() == []
    assert [s["sandboxID"] for s in client.get("/v2/sandboxes", headers=A, params={"metadata": "w=1"}).json()] == [sid]
    assert client.get(f"/sandboxes/{sid}", headers=A).json()["state"] == "running"


def test_list_by_start_time_and_odd_metadata(client, sandbox):
    """startedAfter/startedBefore (RFC 3339, as the SDKs send them) bound the list; metadata keys
    and values are url-encoded once more inside the query parameter; a bad time is E2B's 400."""
    sid = sandbox["sandboxID"]
    started = client.get(f"/sandboxes/{sid}", headers=A).json()["startedAt"]
    listed = lambda **q: [s["sandboxID"] for s in client.get("/v2/sandboxes", headers=A, params=q).json()]  # noqa: E731
    assert listed(startedAfter=started, startedBefore=started) == [sid]
    assert listed(startedAfter="2000-01-01T00:00:00.000Z") == [sid]  # the JavaScript SDK's toISOString()
    assert listed(startedAfter="2999-01-01T00:00:00+00:00") == []  # the Python SDK's isoformat()
    assert listed(startedBefore="2000-01-01T00:00:00Z") == []
    assert listed(metadata="w=1") == [sid] and listed(metadata="w=%31") == [sid] and listed(metadata="w=2") == []
    r = client.get("/v2/sandboxes", headers=A, params={"startedAfter": "yesterday"})
    assert r.status_code == 400 and r.json()["code"] == 400 and "startedAfter" in r.json()["message"], r.text


def test_what_cannot_be_honoured_fails_closed(client, sandbox):
    sid = sandbox["sandboxID"]
    # (pause, snapshots and fork are served: tests/e2b/test_e2b_snapshots.py)
    # an egress proxy that is not host:port, or wants TLS to the proxy, is a 400 naming the field
    for proxy in ({"address": "socks5://10.0.0.1:1080"}, {"address": "10.0.0.1:1080", "tls": True}):
        r = client.put(f"/sandboxes/{sid}/network", headers=A, json={"egressProxy": proxy})
        assert r.status_code == 400 and "egressProxy" in r.json()["message"], r.text


def test_files_refusals_are_in_e2bs_shape(client, sandbox):
    """envd's /files refuses as the control plane does: ``{"code": <status>, "message"}`` under that status."""
    r = client.get("/files", headers=envd(sandbox), params={"path": "/no/such/file"})
    assert r.status_code == 404 and r.json() == {"code": 404, "message": "path '/no/such/file' does not exist"}, r.text
    r = client.get("/files", headers=envd(sandbox), params={"path": "/etc"})
    assert r.status_code == 400 and r.json()["code"] == 400 and "is a directory" in r.json()["message"], r.text
    assert client.get("/files", headers=envd(sandbox), params={"path": "/etc/hostname"}).status_code == 200  # control


def test_data_plane_unknown_or_unproven_sandbox_is_not_found(client, sandbox):
    gone = {"E2b-Sandbox-Id": uuid.uuid4().hex, "X-Access-Token": "x"}
    wrong_token = envd(sandbox, **{"X-Access-Token": "forged"})
    for headers in (gone, wrong_token):
        for path in ("/process.Process/List", "/filesystem.Filesystem/Stat"):
            r = client.post(path, headers={**headers, "Content-Type": "application/json"}, json={"path": "/"})
            assert r.status_code == 502 and "was not found" in r.json()["message"], r.text
        r = client.get("/health", headers=headers)
        assert r.status_code == 502 and "was not found" in r.json()["message"], r.text
        r = client.get("/files", headers=headers, params={"path": "/etc/hostname"})
        assert r.status_code == 502, r.text
    assert client.get("/health", headers=envd(sandbox)).status_code == 204
    # SDK 2.7-2.25 after Sandbox.connect(id) send no E2b-Sandbox-Id: the access token alone routes
    r = client.post("/process.Process/List", json={},
                    headers={"X-Access-Token": sandbox["envdAccessToken"], "Content-Type": "application/json"})
    assert r.status_code == 200 and "processes" in r.json(), r.text
    assert client.get("/health").json()["status"] == "Success"  # ROCK's own health without envd headers


def test_envd_bad_input(client, sandbox):
    h = envd(sandbox, **{"Content-Type": "application/json"})
    r = client.post("/process.Process/List", headers={**h, "Content-Type": "application/proto"}, content=b"\x00")
    assert r.status_code == 501 and r.json()["code"] == "unimplemented", r.text
    r = client.post("/filesystem.Filesystem/Stat", headers=h, content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "invalid_argument", r.text
    r = client.post("/filesystem.Filesystem/Stat", headers=h, json={"path": "/no/such"})
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = client.post("/filesystem.Filesystem/ListDir", headers=h, json={"path": "/etc/passwd"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_argument", r.text
    r = client.post("/process.Process/SendSignal", headers=h, json={"process": {"pid": 999999}, "signal": "SIGNAL_SIGKILL"})
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    # a listing that would not fit one agent frame is refused, and the sandbox goes on
    r = client.post("/filesystem.Filesystem/ListDir", headers=h, json={"path": "/", "depth": 64})
    assert r.status_code == 429 and r.json()["code"] == "resource_exhausted", r.text
    assert client.post("/process.Process/List", headers=h, json={}).status_code == 200
    r = client.get("/files", headers=envd(sandbox), params={"path": "/etc"})
    assert r.status_code == 400 and "directory" in r.json()["message"], r.text
    r = client.get("/files", headers=envd(sandbox), params={"path": "/no/such/file"})
    assert r.status_code == 404 and r.json()["code"] == 404, r.text
    # a stream's error comes in its end-of-stream message
    sh = envd(sandbox, **{"Content-Type": "application/connect+json"})
    r = client.post("/process.Process/Start", headers=sh,
                    content=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", "pwd"], "cwd": "/no/such/dir"}}))
    (flags, end), = frames(r.content)
    assert r.status_code == 200 and flags == 2 and end["error"]["code"] == "invalid_argument", r.content
    stranger = {**sh, "Authorization": "Basic " + base64.b64encode(b"nobody-here:").decode()}
    for process in ({"cmd": "/bin/true"}, {"cmd": "/bin/true", "cwd": "work"}):  # with a cwd: resolved in its home
        r = client.post("/process.Process/Start", headers=stranger, content=envelope({"process": process}))
        assert frames(r.content)[-1][1]["error"]["code"] == "unauthenticated", r.content
    r = client.post("/process.Process/Start", headers=sh, content=envelope({"process": {"cmd": "/bin/true", "envs": [1]}}))
    assert frames(r.content)[-1][1]["error"]["code"] == "invalid_argument", r.content


def test_a_watch_cannot_take_the_hosts_inotify_watches(client, sandbox):
    """Each watched directory is one of the host's inotify watches, which every sandbox shares: a
    recursive watch over more directories than one sandbox may watch is refused and keeps none;
    the control, a watch of the same directory alone, works."""
    from rock.agent.e2b.inotify import MAX_WATCHES

    sh = envd(sandbox, **{"Content-Type": "application/connect+json"})
    script = f"mkdir -p /tmp/many && cd /tmp/many && seq {MAX_WATCHES + 10} | xargs mkdir"
    with client.stream("POST", "/process.Process/Start", headers=sh,
                       content=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", script]}})) as r:
        b"".join(r.iter_bytes())
    h = envd(sandbox, **{"Content-Type": "application/json"})
    assert client.post("/filesystem.Filesystem/Stat", headers=h, json={"path": f"/tmp/many/{MAX_WATCHES + 10}"}).status_code == 200
    r = client.post("/filesystem.Filesystem/CreateWatcher", headers=h, json={"path": "/tmp/many", "recursive": True})
    assert r.status_code == 429 and r.json()["code"] == "resource_exhausted" and "narrower" in r.json()["message"], r.text
    # the refused watch kept none of its watches: were they held, this one would be refused too
    r = client.post("/filesystem.Filesystem/CreateWatcher", headers=h, json={"path": "/tmp/many"})
    assert r.status_code == 200 and r.json()["watcherId"], r.text
    assert client.post("/filesystem.Filesystem/RemoveWatcher", headers=h, json=r.json()).status_code == 200


def test_paths_stay_inside_the_sandbox(client, sandbox):
    marker = f"/tmp/rock-e2b-marker-{uuid.uuid4().hex}"
    h = envd(sandbox)
    r = client.post("/files", headers=h, params={"path": "../../.." + marker}, content=b"inside")
    assert r.status_code == 200 and r.json()[0]["path"] == marker, r.text
    assert not os.path.exists(marker)  # written in the sandbox, not on the host
    assert client.get("/files", headers=h, params={"path": marker}).content == b"inside"
    sh = envd(sandbox, **{"Content-Type": "application/connect+json"})
    r = client.post("/process.Process/Start", headers=sh,
                    content=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", f"cat {marker}; touch {marker}.ran"]}}))
    events = [m for _, m in frames(r.content)]
    assert base64.b64decode(events[1]["event"]["data"]["stdout"]) == b"inside", events
    assert events[-2]["event"]["end"]["exited"] is True and not os.path.exists(marker + ".ran")


def test_template_table_and_timeout_lease(client, e2b_admin, monkeypatch):
    # files kept 2 s past the timeout, not 30 (the wait below)
    monkeypatch.setattr(e2b_admin.ctx.settings.e2b, "keep_after_timeout", 2)
    r = client.post("/sandboxes", headers=A, json={"templateID": "py311", "timeout": 3, "envVars": {"K": "v"}})
    assert r.status_code == 201 and r.json()["templateID"] == "py311", r.text
    sid = r.json()["sandboxID"]
    record = e2b_admin.ctx.sandboxes.records[sid]
    assert (record.image, record.auto_clear_seconds, record.spec["env"]) == ("python:3.11", 3, {"K": "v"})
    assert [s["sandboxID"] for s in client.get("/v2/sandboxes", headers=A, params={"template": "py311"}).json()] == [sid]
    deadline = time.time() + 60  # idle past its timeout: stopped by the reaper, then gone for E2B
    while client.get(f"/sandboxes/{sid}", headers=A).status_code == 200 and time.time() < deadline:
        time.sleep(0.5)
    assert client.get(f"/sandboxes/{sid}", headers=A).status_code == 404
    deadline += 60
    while record.state != "deleted" and time.time() < deadline:  # its files go too, soon after
        time.sleep(0.5)
    assert record.state == "deleted", record.state
    r = client.get("/health", headers={"E2b-Sandbox-Id": sid, "X-Access-Token": r.json()["envdAccessToken"]})
    assert r.status_code == 502 and "was not found" in r.json()["message"]


def test_a_proxy_serves_the_data_plane_only(client, sandbox, e2b_admin):
    """Read/write separation: a proxy on the admin's state answers envd for the admin's sandbox;
    creating and killing stay with the admin."""
    from tests.admin.harness import Admin
    from tests.e2b.conftest import TOKENS

    proxy = Admin(e2b_admin.backend, state_dir=e2b_admin.state_dir, role="proxy", tokens=TOKENS).start()
    try:
        with httpx.Client(base_url=proxy.url, timeout=120) as p:
            sh = envd(sandbox, **{"Content-Type": "application/connect+json"})
            r = p.post("/process.Process/Start", headers=sh,
                       content=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", "echo via-proxy"]}}))
            events = [m for _, m in frames(r.content)]
            assert base64.b64decode(events[1]["event"]["data"]["stdout"]) == b"via-proxy\n", events
            assert p.get("/health", headers=envd(sandbox)).status_code == 204
            r = p.post("/v2/sandboxes", headers=A, json={"templateID": "base"})
            assert r.status_code in (404, 405), r.text
            r = p.post("/process.Process/List", headers={**envd(sandbox, **{"X-Access-Token": "forged"}),
                                                          "Content-Type": "application/json"}, json={})
            assert r.status_code == 502
    finally:
        proxy.stop()


def test_a_client_that_does_not_read_is_let_go(client, sandbox, monkeypatch):
    """Output the client does not read is held up to a bound; past it the stream ends with
    resource_exhausted and the process runs on (the admin's memory stays bounded)."""
    from rock.admin.e2b import process

    monkeypatch.setattr(process, "MAX_BUFFERED", 1 << 20)
    sh = envd(sandbox, **{"Content-Type": "application/connect+json"})
    script = "head -c 30000000 /dev/zero; echo $$ > /tmp/writer.pid; sleep 30"
    with client.stream("POST", "/process.Process/Start", headers=sh,
                       content=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", script]}})) as r:
        time.sleep(3)  # read nothing while it writes 30 MB
        raw = b"".join(r.iter_bytes())
    last = frames(raw)[-1]
    assert last[0] == 2 and last[1]["error"]["code"] == "resource_exhausted", last
    h = envd(sandbox, **{"Content-Type": "application/json"})
    listed = client.post("/process.Process/List", headers=h, json={}).json()["processes"]
    assert any("writer.pid" in " ".join(p["config"]["args"]) for p in listed), listed  # still running


def test_a_cell_whose_output_is_not_read_is_interrupted(client, sandbox, monkeypatch):
    from rock.admin.e2b import interpreter

    monkeypatch.setattr(interpreter, "MAX_BUFFERED", 1 << 20)
    h = envd(sandbox, **{"E2b-Sandbox-Port": "49999", "Content-Type": "application/json"})
    cell = "import time\nfor i in range(100000): print('x' * 1000)\ntime.sleep(30)"
    with client.stream("POST", "/execute", headers=h, json={"code": cell}) as r:
        time.sleep(3)
        lines = [json.loads(line) for line in r.iter_lines() if line]
    errors = [m for m in lines if m["type"] == "error"]
    assert errors and errors[0]["name"] == "OutputTooLarge", lines[-3:]
    r = client.post("/execute", headers=h, json={"code": "1 + 1"})  # the context is usable again
    assert [m["text"] for m in map(json.loads, r.text.splitlines()) if m["type"] == "result"] == ["2"], r.text


@pytest.mark.bwrap
def test_bwrap_internet_access_is_gated_not_the_hosts():
    """On bwrap E2B's allowInternetAccess (true by default in e2b 2.50 and older) is an egress
    policy of "all" through the gate (never the host's namespace), without the operator's
    allow_host_network; false starts with no network."""
    from tests.admin.harness import Admin
    from tests.e2b.conftest import TOKENS

    admin = Admin("bwrap", tokens=TOKENS).start()
    try:
        with httpx.Client(base_url=admin.url, timeout=120) as c:
            r = c.post("/v2/sandboxes", headers=A, json={"templateID": "base", "allow_internet_access": True})
            assert r.status_code == 201, r.text
            sid = r.json()["sandboxID"]
            assert admin.ctx.worker.egress.attached(sid)
            assert c.get(f"/sandboxes/{sid}", headers=A).json()["allowInternetAccess"] is True
            assert c.delete(f"/sandboxes/{sid}", headers=A).status_code == 204
            r = c.post("/v2/sandboxes", headers=A, json={"templateID": "base", "allow_internet_access": False})
            assert r.status_code == 201, r.text
            assert c.delete(f"/sandboxes/{r.json()['sandboxID']}", headers=A).status_code == 204
    finally:
        admin.stop(stop_sandboxes=True)


def test_a_process_stream_keeps_envds_order_and_deadlines(client, sandbox):
    """One Start stream per case, read whole: output a background child writes after the command
    exits still comes before the end; a silent command gets keepalives; a command that closes its
    outputs and runs on is killed at its deadline (deadline_exceeded), as envd does."""
    sh = envd(sandbox, **{"Content-Type": "application/connect+json"})

    def start(script: str, **headers) -> list[tuple[int, dict]]:
        r = client.post("/process.Process/Start", headers={**sh, **headers},
                        content=envelope({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", script]}}))
        assert r.status_code == 200, r.text
        return frames(r.content)

    def stdout(got) -> bytes:
        return b"".join(base64.b64decode(m["event"]["data"]["stdout"]) for _, m in got
                        if "data" in m.get("event", {}) and "stdout" in m["event"]["data"])

    got = start("(sleep 0.5; echo late) & echo now; exit 4")
    assert stdout(got) == b"now\nlate\n", got
    assert got[-2][1]["event"]["end"]["exitCode"] == 4 and got[-1] == (2, {}), got

    got = start("sleep 2.5; echo done", **{"Keepalive-Ping-Interval": "1"})
    assert any(m == {"event": {"keepalive": {}}} for _, m in got), got  # 2.5 s of silence, one per second
    assert stdout(got) == b"done\n" and got[-2][1]["event"]["end"]["exitCode"] == 0, got

    got = start("echo $$ > /tmp/closed.pid; exec >&- 2>&-; sleep 60", **{"Connect-Timeout-Ms": "1500"})
    assert got[-1][0] == 2 and got[-1][1]["error"]["code"] == "deadline_exceeded", got
    h = envd(sandbox, **{"Content-Type": "application/json"})
    listed = client.post("/process.Process/List", headers=h, json={}).json()["processes"]
    assert not any("closed.pid" in " ".join(p["config"]["args"]) for p in listed), listed  # killed, not left running


def test_an_e2b_sandbox_readies_processes_not_a_spare_session(client, sandbox):
    """E2B's commands are processes of their own: its sandbox's agent keeps no spare bash for a
    session nobody takes (its CPU would compete with the first command), yet a session asked
    for through ROCK's API on the same sandbox still starts, and the check below sees its bash."""
    sh = envd(sandbox, **{"Content-Type": "application/connect+json"})

    def processes() -> str:
        r = client.post("/process.Process/Start", headers=sh,
                        content=envelope({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "ps -eo args"]}}))
        assert r.status_code == 200, r.text
        return b"".join(base64.b64decode(m["event"]["data"]["stdout"]) for _, m in frames(r.content)
                        if "stdout" in m.get("event", {}).get("data", {})).decode()

    listed = processes()
    assert "ps -eo args" in listed and "--noprofile" not in listed, listed
    # what told the agent so is its own, not in the environment its commands inherit
    r = client.post("/process.Process/Start", headers=sh,
                    content=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", "env"]}}))
    env = b"".join(base64.b64decode(m["event"]["data"]["stdout"]) for _, m in frames(r.content)
                   if "stdout" in m.get("event", {}).get("data", {})).decode()
    assert "ROCK_SANDBOX_ID=" in env and "ROCK_AGENT_PREWARM" not in env, env  # the control: env did run
    rock = {"Authorization": "Bearer " + A["X-API-KEY"]}
    api = "/apis/envs/sandbox/v1"
    r = client.post(f"{api}/create_session", headers=rock, json={"sandbox_id": sandbox["sandboxID"], "session": "s"})
    assert r.status_code == 200 and r.json()["status"] == "Success", r.text
    r = client.post(f"{api}/run_in_session", headers=rock,
                    json={"sandbox_id": sandbox["sandboxID"], "session": "s", "command": "echo in-session"})
    assert r.status_code == 200 and r.json()["result"]["output"].strip() == "in-session", r.text
    assert "--noprofile" in processes()  # the control: the session's bash is what the check looks for
