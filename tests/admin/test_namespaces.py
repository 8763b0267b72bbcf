"""Tokens and namespaces: another token cannot see, run in, read from or stop a sandbox."""

from __future__ import annotations

import httpx
import pytest

from rock.admin.auth import check_bind
from rock.admin.context import PREFIX
from rock.errors import RockError, SandboxNotFound, Unauthorized
from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox
from tests.admin.harness import Admin

TOKENS = {"token-alice": "alice", "token-bob": "bob"}


@pytest.fixture(scope="module")
def secured(admin):
    server = Admin(admin.backend, tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


def test_non_loopback_without_tokens_is_refused():
    with pytest.raises(RockError, match="without API tokens"):
        check_bind("0.0.0.0", {})
    check_bind("0.0.0.0", TOKENS)
    check_bind("127.0.0.1", {})


def test_other_namespace_gets_404_on_everything(secured):
    alice = SyncSandbox(SandboxConfig(base_url=secured.url, token="token-alice", memory="512m", cpus=1))
    alice.start()
    try:
        sid = alice.sandbox_id
        alice.write_bytes("/tmp/secret", b"alice's")
        ops = [
            ("GET", "/get_status", {"sandbox_id": sid}), ("GET", "/is_alive", {"sandbox_id": sid}),
            ("GET", "/stats", {"sandbox_id": sid}), ("GET", "/get_sandbox_statistics", {"sandbox_id": sid}),
            ("POST", "/execute", {"sandbox_id": sid, "command": "cat /tmp/secret"}),
            ("POST", "/create_session", {"sandbox_id": sid, "session": "b"}),
            ("POST", "/run_in_session", {"sandbox_id": sid, "session": "default", "command": "cat /tmp/secret"}),
            ("POST", "/close_session", {"sandbox_id": sid, "session": "default"}),
            ("POST", "/read_file", {"sandbox_id": sid, "path": "/tmp/secret"}),
            ("POST", "/write_file", {"sandbox_id": sid, "path": "/tmp/secret", "content": "bob"}),
            ("POST", "/interrupt_session", {"sandbox_id": sid, "session": "default"}),
            ("POST", "/send_input", {"sandbox_id": sid, "session": "default", "data": "x"}),
            ("POST", "/procs/start", {"sandbox_id": sid, "command": "true"}),
            ("GET", "/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}),
            ("GET", "/files/download", {"sandbox_id": sid, "path": "/tmp"}),
            ("GET", "/sandboxes/" + sid + "/history", {}),
            ("GET", "/sandboxes/" + sid + "/proxy/port/8000/", {}), ("POST", "/sandboxes/" + sid + "/proxy?rock_target_port=8000", {}),
            ("POST", "/stop", {"sandbox_id": sid}), ("POST", "/delete", {"sandbox_id": sid}),
        ]
        with httpx.Client(base_url=secured.url + PREFIX, headers={"Authorization": "Bearer token-bob"}) as bob:
            for method, route, args in ops:
                r = bob.request(method, route, **({"json": args} if method == "POST" else {"params": args}))
                assert r.status_code == 404, (route, r.status_code, r.text)
                assert r.json()["result"]["error_type"] == "SandboxNotFound"
            r = bob.post("/upload", data={"sandbox_id": sid, "target_path": "/tmp/x"}, files={"file": ("f", b"x")})
            assert r.status_code == 404
            assert bob.get("/sandboxes").json()["result"]["items"] == []
            batch = bob.post("/sandboxes/batch", json={"sandbox_ids": [sid]}).json()["result"]["statuses"]
            assert batch == []
        with httpx.Client(base_url=secured.url + PREFIX, headers={"Authorization": "Bearer token-alice"}) as mine:
            r = mine.get(f"/sandboxes/{sid}/proxy/port/8009/")  # her own sandbox: reached, nothing listens there
            assert r.status_code == 502 and "port 8009" in r.json()["message"], r.text
        with httpx.Client(base_url=secured.url + PREFIX) as anonymous:
            r = anonymous.get("/get_status", params={"sandbox_id": sid})
            assert r.status_code == 401 and "token" in r.json()["message"]
            assert anonymous.post("/run_in_session", json={"sandbox_id": sid, "command": "true"}).status_code == 401

        bob_sdk = SyncSandbox(SandboxConfig(base_url=secured.url, token="token-bob"))
        with pytest.raises(SandboxNotFound):
            bob_sdk.attach(sid)
        with pytest.raises(Unauthorized):
            SyncSandbox(SandboxConfig(base_url=secured.url, token="wrong")).attach(sid)
        # Alice's sandbox and file are untouched.
        assert alice.read_bytes("/tmp/secret") == b"alice's"
        assert alice.get_status().is_alive
    finally:
        alice.stop()


def test_schema_security_is_what_the_admin_enforces(secured):
    """Every operation the schema says needs a token refuses a request without one before it
    reads anything (401; a UI page sends the browser to the login form, 303); every operation it
    declares public (``security: []``) answers without one."""
    schema = httpx.get(secured.url + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]
    closed = public = 0
    with httpx.Client(base_url=secured.url, timeout=60) as anonymous:
        for path, item in schema["paths"].items():
            for method, op in item.items():
                url = path.replace("{path}", "x").replace("{", "").replace("}", "")  # any id: no lookup happens
                r = anonymous.request(method.upper(), url)
                if op.get("security") == []:
                    public += 1
                    assert r.status_code != 401, (method, path, r.status_code, r.text)
                elif path == "/" or path.startswith("/ui/") and not path.startswith(("/ui/fragments/", "/ui/events")):
                    closed += 1
                    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login"), (method, path)
                else:
                    closed += 1
                    assert r.status_code == 401, (method, path, r.status_code, r.text)
                    if "/agentscope/" in path:  # AgentScope's own error shape
                        assert r.json()["success"] is False and "token" in r.json()["detail"]
                    elif path.startswith(("/sandboxes", "/v2/sandboxes", "/snapshots")):  # E2B's (rock.admin.e2b)
                        assert r.json()["code"] == 401 and "API key" in r.json()["message"]
                    else:
                        assert method == "head" or r.json()["result"]["error_type"] == "Unauthorized"
    assert closed > 80 and public == 5, (closed, public)
