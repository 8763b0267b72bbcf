"""Bad input on every route gets a 4xx with a message, and the admin keeps serving."""

from __future__ import annotations

import httpx
import pytest

from rock.admin.context import PREFIX
from rock.sdk.sandbox import Sandbox, SandboxConfig

# (method, route, kind): kind says how the route takes its input.
ROUTES = [
    ("POST", "/start", "json"), ("POST", "/start_async", "json"), ("GET", "/is_alive", "query"),
    ("GET", "/get_status", "query"), ("GET", "/get_sandbox_statistics", "query"), ("POST", "/stop", "json"),
    ("POST", "/delete", "json"), ("GET", "/sandboxes", "query"), ("POST", "/sandboxes/batch", "json"),
    ("POST", "/execute", "json"), ("POST", "/create_session", "json"), ("POST", "/run_in_session", "json"),
    ("POST", "/close_session", "json"), ("POST", "/read_file", "json"), ("POST", "/write_file", "json"),
    ("POST", "/upload", "multipart"), ("POST", "/interrupt_session", "json"), ("POST", "/send_input", "json"),
    ("POST", "/wait_session", "json"), ("GET", "/sessions", "query"), ("GET", "/files/read", "query"),
    ("PUT", "/files/write", "query"), ("GET", "/files/download", "query"), ("PUT", "/files/upload_tar", "query"),
    ("GET", "/files/stat", "query"), ("GET", "/files/list", "query"), ("POST", "/procs/start", "json"),
    ("GET", "/procs/status", "query"), ("GET", "/procs/output", "query"), ("POST", "/procs/kill", "json"),
    ("GET", "/procs", "query"), ("GET", "/stats", "query"), ("POST", "/restart", "json"), ("POST", "/commit", "json"),
]
NEEDS_SANDBOX = {r for _, r, _ in ROUTES} - {"/start", "/start_async", "/sandboxes", "/sandboxes/batch"}


@pytest.fixture(scope="module")
def client(admin):
    with httpx.Client(base_url=admin.url + PREFIX, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def sandbox_id(admin):
    from rock.sdk.sandbox.sync import SyncSandbox

    box = SyncSandbox(SandboxConfig(base_url=admin.url, memory="512m", cpus=1))
    box.start()
    yield box.sandbox_id
    box.stop()


def assert_4xx(response: httpx.Response, *statuses: int) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:500])
    body = response.json()
    assert body["status"] == "Failed" and body["message"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def send(client, method, route, kind, payload):
    if kind == "json":
        return client.request(method, route, json=payload)
    if kind == "multipart":
        return client.post(route, data={k: str(v) for k, v in payload.items()}, files={"file": ("f", b"x")})
    return client.request(method, route, params=payload)


@pytest.mark.parametrize("method,route,kind", ROUTES, ids=[r for _, r, _ in ROUTES])
def test_wrong_types_and_missing_fields(client, method, route, kind):
    if route in NEEDS_SANDBOX:
        if kind == "multipart":
            r = client.post(route, data={"target_path": "/tmp/x"})  # no file, no sandbox_id
        else:
            r = send(client, method, route, kind, {})
        assert_4xx(r)
    wrong = {"sandbox_id": ["not", "a", "string"], "cpus": "many", "memory": "lots", "page": "x",
             "session": 7, "command": {"a": 1}, "path": 5, "sandbox_ids": "x", "timeout": "soon"}
    if kind != "multipart":
        assert_4xx(send(client, method, route, kind, wrong))
    if kind == "json":
        assert_4xx(client.request(method, route, content=b"{not json", headers={"content-type": "application/json"}))


@pytest.mark.parametrize("method,route,kind", [r for r in ROUTES if r[1] in NEEDS_SANDBOX],
                         ids=[r for _, r, _ in ROUTES if r in NEEDS_SANDBOX])
def test_unknown_sandbox(client, method, route, kind):
    fields = {"session": "s", "command": "true", "path": "/tmp/x", "content": "x", "data": "x", "proc_id": "p1",
              "target_path": "/tmp/x", "image_tag": "rock-test/never:v1"}
    wanted = {"/execute": ["command"], "/run_in_session": ["session", "command"], "/read_file": ["path"],
              "/write_file": ["path", "content"], "/upload": ["target_path"], "/send_input": ["session", "data"],
              "/interrupt_session": ["session"], "/wait_session": ["session"], "/close_session": ["session"],
              "/create_session": ["session"], "/procs/start": ["command"], "/procs/status": ["proc_id"],
              "/procs/output": ["proc_id"], "/procs/kill": ["proc_id"], "/commit": ["image_tag"]}.get(route, [])
    if route.startswith("/files/"):
        wanted = ["path"]
    payload = {"sandbox_id": "no-such-sandbox", **{k: fields[k] for k in wanted}}
    body = assert_4xx(send(client, method, route, kind, payload), 404)
    assert "no-such-sandbox" in body["message"]


@pytest.mark.parametrize("method,route,kind", [r for r in ROUTES if r[2] in ("json", "multipart")],
                         ids=[r for _, r, k in ROUTES if k in ("json", "multipart")])
def test_100_mb_body_is_refused(client, method, route, kind):
    big = b"x" * (100 << 20)
    if kind == "multipart":
        r = client.post(route, content=big, headers={"content-type": "multipart/form-data; boundary=b"})
        # /upload accepts large files (spooled to disk); a malformed 100 MB form is still a 4xx.
        assert_4xx(r)
        return
    assert_4xx(client.request(method, route, content=big, headers={"content-type": "application/json"}), 413)


@pytest.mark.parametrize("route,payload", [
    ("/read_file", {"path": "/tmp/../etc/passwd"}),
    ("/write_file", {"path": "../x", "content": "x"}),
    ("/execute", {"command": "pwd", "cwd": "/tmp/../.."}),
    ("/create_session", {"session": "s", "startup_source": ["/etc/../etc/profile"]}),
    ("/procs/start", {"command": "true", "cwd": "a/../../b"}),
])
def test_parent_paths_are_refused(client, sandbox_id, route, payload):
    body = assert_4xx(client.post(route, json={"sandbox_id": sandbox_id, **payload}), 400)
    assert ".." in body["message"]


@pytest.mark.parametrize("route", ["/files/read", "/files/download", "/files/stat", "/files/list"])
def test_parent_paths_in_queries_are_refused(client, sandbox_id, route):
    assert_4xx(client.get(route, params={"sandbox_id": sandbox_id, "path": "/tmp/../../etc"}), 400)


def test_bad_values_on_a_live_sandbox(client, sandbox_id):
    assert_4xx(client.post("/read_file", json={"sandbox_id": sandbox_id, "path": "/no/such/file"}), 404)
    assert_4xx(client.post("/run_in_session", json={"sandbox_id": sandbox_id, "session": "nope", "command": "x"}), 404)
    assert_4xx(client.post("/start_async", json={"image": "python:3.11", "sandbox_id": "../evil"}), 422)
    assert_4xx(client.post("/start_async", json={"image": "python:3.11", "memory": "-5 parsecs"}), 422)
    assert_4xx(client.get("/files/read", params={"sandbox_id": sandbox_id, "path": "/tmp", "offset": -1}), 422)
    assert_4xx(client.get("/no/such/route"), 404)
    assert_4xx(client.put("/files/write", params={"sandbox_id": sandbox_id, "path": "/tmp/x", "mode": "999"}), 422)


def test_admin_keeps_serving_after_all_that(admin, client):
    assert client.get(admin.url + "/health").json()["status"] == "Success"
    box = Sandbox(SandboxConfig(base_url=admin.url, memory="512m", cpus=1))

    async def go():
        await box.start()
        try:
            return (await box.arun("echo alive")).output.strip()
        finally:
            await box.stop()

    import asyncio

    assert asyncio.run(go()) == "alive"
