"""The UI's routes and the admin data behind them, over plain HTTP against a real admin:
login and the token cookie, namespaces, bad input, the command log, /metrics and env calls."""

from __future__ import annotations

import contextlib
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rock.admin.context import PREFIX
from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox

pytestmark = pytest.mark.bwrap


@contextlib.contextmanager
def client(admin, token: str | None = None):
    """A browser-like client: logged in through the form when given a token (the cookie)."""
    with httpx.Client(base_url=admin.url, timeout=60, follow_redirects=False) as c:
        if token:
            r = c.post("/ui/login", data={"token": token, "next": "/ui/sandboxes"})
            assert r.status_code == 303 and r.headers["location"] == "/ui/sandboxes"
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
        yield c


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_login_guards_pages_and_keeps_no_foreign_next(ui_admin):
    with client(ui_admin) as anonymous:
        r = anonymous.get("/ui/sandboxes?state=running")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fsandboxes%3Fstate%3Drunning"
        assert anonymous.get("/ui/fragments/sandboxes").status_code == 401  # scripts get a status, not a page
        assert anonymous.get("/ui/events").status_code == 401
        assert anonymous.get("/metrics").status_code == 401
        bad = anonymous.post("/ui/login", data={"token": "nope"})
        assert bad.status_code == 401 and "unknown token" in bad.text
        r = anonymous.post("/ui/login", data={"token": "token-alice", "next": "//evil.example/x"})
        assert r.headers["location"] == "/"  # only a path on this admin
        assert anonymous.post("/ui/login", data={}).status_code == 422
    with client(ui_admin, "token-alice") as alice:
        assert alice.get("/").status_code == 200
        assert alice.get("/metrics").status_code == 200
        # another site's form cannot use the cookie for an action
        r = alice.post("/ui/sandboxes/x/stop", headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403 and "own pages" in r.text
        r = alice.post("/ui/logout")
        assert r.status_code == 303 and 'rock_token=""' in r.headers["set-cookie"]


def test_bad_input_gets_a_readable_4xx(ui_admin):
    with client(ui_admin, "token-alice") as alice:
        r = alice.get("/ui/sandboxes?state=bogus")
        assert r.status_code == 400 and "unknown state" in r.text and "Traceback" not in r.text
        r = alice.get("/ui/sandboxes?page=0")
        assert r.status_code == 422 and "page" in r.json()["message"]
        assert alice.get("/ui/sandboxes/nope").status_code == 404
        assert alice.get("/ui/sandboxes/nope/download?path=/etc/hostname").status_code == 404
        assert alice.get("/ui/fragments/sandbox/nope").status_code == 404


def test_cookie_token_works_on_the_api_and_commands_are_logged(ui_admin):
    alice_sdk = SyncSandbox(SandboxConfig(base_url=ui_admin.url, token="token-alice", memory="256m", cpus=0.5))
    alice_sdk.start()
    try:
        sid = alice_sdk.sandbox_id
        with client(ui_admin, "token-alice") as alice, client(ui_admin, "token-bob") as bob:
            # The cookie alone authorizes the API (what the page's links and WebSocket rely on).
            r = alice.post(PREFIX + "/execute", json={"sandbox_id": sid, "command": "exit 4", "shell": True})
            assert r.status_code == 200 and r.json()["result"]["exit_code"] == 4
            r = alice.post(PREFIX + "/run_in_session", json={"sandbox_id": sid, "session": "default",
                                                             "command": "sleep 0.05; echo done", "check": "silent"})
            assert r.json()["result"]["output"].strip() == "done"
            page = alice.get(f"/ui/fragments/sandbox/{sid}").text
            assert page.index("sleep 0.05; echo done") < page.index("exit 4")  # newest first
            recent = ui_admin.ctx.sandboxes.commands.recent(sid)
            assert [(c["via"], c["exit_code"], c["status"]) for c in recent[:2]] == [
                ("run_in_session", 0, "completed"), ("execute", 4, "completed")]
            assert recent[0]["duration_ms"] >= 50
            # Bob's cookie sees nothing of it, anywhere.
            assert bob.post(PREFIX + "/execute", json={"sandbox_id": sid, "command": "true"}).status_code == 404
            assert bob.get(f"/ui/fragments/sandbox/{sid}").status_code == 404
            assert bob.get(f"/ui/events?sandbox_id={sid}").status_code == 404
            assert sid not in bob.get("/ui/fragments/sandboxes").text
            assert sid in alice.get("/ui/fragments/sandboxes").text
            files = alice.get(f"/ui/fragments/files/{sid}", params={"path": "/etc"}).text
            assert "hostname" in files or "passwd" in files
    finally:
        alice_sdk.stop()


def test_run_in_session_is_timed_in_the_metrics(ui_admin):
    # run_in_session is answered at the app's own door, before the metrics middleware: it times
    # itself into the same histogram, failures with their status.
    sdk = SyncSandbox(SandboxConfig(base_url=ui_admin.url, token="token-alice", memory="256m", cpus=0.5))
    sdk.start()
    route = PREFIX + "/run_in_session"

    def count(status: int) -> float:
        return samples(alice.get("/metrics").text).get(("rock_http_request_duration_seconds_count", (
            ("method", "POST"), ("route", route), ("status", str(status)))), 0)

    try:
        with client(ui_admin, "token-alice") as alice:
            ok0, missing0, bad0 = count(200), count(404), count(422)
            for _ in range(3):
                r = alice.post(route, json={"sandbox_id": sdk.sandbox_id, "command": "echo hi", "check": "silent"})
                assert r.status_code == 200 and r.json()["result"]["output"].strip() == "hi", r.text
            assert alice.post(route, json={"sandbox_id": "nope", "command": "echo hi"}).status_code == 404
            assert alice.post(route, content=b"{").status_code == 422  # not JSON
            assert (count(200) - ok0, count(404) - missing0, count(422) - bad0) == (3, 1, 1)
            # A proxied request, answered at the door too, under its route's template.
            proxied = ("rock_http_request_duration_seconds_count", (
                ("method", "GET"), ("route", PREFIX + "/sandboxes/{sandbox_id}/proxy/{path}"), ("status", "502")))
            before = samples(alice.get("/metrics").text).get(proxied, 0)
            assert alice.get(f"{PREFIX}/sandboxes/{sdk.sandbox_id}/proxy/port/8009/x").status_code == 502
            assert samples(alice.get("/metrics").text).get(proxied, 0) - before == 1
    finally:
        sdk.stop()


def test_env_calls_are_counted(ui_admin):
    headers = {"Authorization": "Bearer token-alice"}
    with httpx.Client(base_url=ui_admin.url, headers=headers, timeout=300) as api:
        before = samples(api.get("/metrics").text)
        made = api.post("/apis/v1/envs/gem/make", json={"env_id": "game:GuessTheNumber-v0-easy"})
        assert made.status_code == 200, made.text
        handle = made.json()["sandbox_id"]
        try:
            assert api.post("/apis/v1/envs/gem/reset", json={"sandbox_id": handle, "seed": 1}).status_code == 200
            for guess in ("[5]", "[3]", "[8]"):
                assert api.post("/apis/v1/envs/gem/step", json={"sandbox_id": handle, "action": guess}).status_code == 200
            assert api.post("/apis/v1/envs/gem/step", json={"sandbox_id": "nope:x", "action": "1"}).status_code == 404
            after = samples(api.get("/metrics").text)
            hosted = after[("rock_envs_hosted", ())]
        finally:
            api.post("/apis/v1/envs/gem/close", json={"sandbox_id": handle})

    def grew(kind: str) -> float:
        key = ("rock_env_steps_total", (("kind", kind),))
        return after.get(key, 0) - before.get(key, 0)

    assert (grew("reset"), grew("step")) == (1, 3)  # the failed step is not counted
    assert hosted >= 1
    step = ("rock_http_request_duration_seconds_count",
            (("method", "POST"), ("route", "/apis/v1/envs/gem/step"), ("status", "404")))
    assert after[step] - before.get(step, 0) == 1


def test_a_stopped_sandboxs_event_stream_says_it_is_alive(ui_admin):
    """A sandbox page's stream sends stats while the sandbox runs; once it is stopped it sent
    nothing at all, so a client (Schemathesis, a proxy) could not tell a live stream from a dead
    one and waited forever. Now each period without stats carries a comment."""
    with client(ui_admin, "token-alice") as c:
        sid = c.post(PREFIX + "/start", json={"memory": "256m"}).json()["result"]["sandbox_id"]
        try:
            assert c.post(PREFIX + "/stop", json={"sandbox_id": sid}).status_code == 200
            with c.stream("GET", "/ui/events", params={"sandbox_id": sid}, timeout=20) as r:
                assert r.status_code == 200
                seen = ""
                for chunk in r.iter_text():
                    seen += chunk
                    if ": idle" in seen:
                        break
            assert seen.startswith("retry:") and "\n: idle\n\n" in seen and "event: stats" not in seen, seen
        finally:
            c.post(PREFIX + "/delete", json={"sandbox_id": sid})
