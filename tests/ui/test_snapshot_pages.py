"""The UI's pause, resume, snapshot and fork buttons and its snapshots list, over plain HTTP
against a real admin (bwrap), and in a real browser: what each does to the sandbox, bad form
input as a readable 4xx, another token reaching nothing, cross-site posts refused."""

from __future__ import annotations

import pytest

from rock.admin.context import PREFIX
from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox
from tests.ui.test_browser import WAIT_MS, login
from tests.ui.test_pages import client

pytestmark = pytest.mark.bwrap


@pytest.fixture
def alice_sandbox(ui_admin):
    sdk = SyncSandbox(SandboxConfig(base_url=ui_admin.url, token="token-alice", memory="256m", cpus=0.5))
    sdk.start()
    yield sdk
    sdk.stop()


def state(ui_admin, sid: str) -> str:
    return ui_admin.ctx.sandboxes.records[sid].state


def run(c, sid: str, command: str):
    return c.post(PREFIX + "/execute", json={"sandbox_id": sid, "command": command, "shell": True})


def test_pause_resume_snapshot_fork_and_the_snapshots_list(ui_admin, alice_sandbox):
    sid = alice_sandbox.sandbox_id
    svc = ui_admin.ctx.sandboxes
    with client(ui_admin, "token-alice") as alice, client(ui_admin, "token-bob") as bob:
        assert run(alice, sid, "echo kept > /root/f").status_code == 200
        page = alice.get(f"/ui/sandboxes/{sid}").text
        assert 'id="pause"' in page and 'id="resume" class="secondary outline" disabled' in page

        # pause: the state, the page's buttons, the API's refusal; resume undoes all three
        r = alice.post(f"/ui/sandboxes/{sid}/pause")
        assert r.status_code == 303 and r.headers["location"] == f"/ui/sandboxes/{sid}"
        assert state(ui_admin, sid) == "paused"
        page = alice.get(f"/ui/sandboxes/{sid}").text
        assert 'id="pause" class="secondary outline" disabled' in page and 'class="state paused"' in page
        r = run(alice, sid, "true")
        assert r.status_code == 409 and "paused" in r.text, r.text
        assert alice.post(f"/ui/sandboxes/{sid}/resume").status_code == 303
        assert state(ui_admin, sid) == "running" and run(alice, sid, "true").status_code == 200

        # a snapshot (to the list), then a sandbox from it with the file
        r = alice.post(f"/ui/sandboxes/{sid}/snapshot", data={"name": "ui-snap", "mode": "filesystem"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/snapshots", r.text
        [snap] = ui_admin.call(lambda: svc.snapshots("alice"))
        assert snap.name.startswith("ui-snap.")
        listing = alice.get("/ui/snapshots").text
        assert f'data-snapshot="{snap.name}"' in listing and f'href="/ui/sandboxes/{sid}"' in listing
        assert snap.name not in bob.get("/ui/snapshots").text
        r = alice.post(f"/ui/snapshots/{snap.name}/start")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/sandboxes/"), r.text
        started = r.headers["location"].rsplit("/", 1)[1]
        try:
            out = run(alice, started, "cat /root/f").json()["result"]
            assert out["stdout"].strip() == "kept", out
        finally:
            ui_admin.call(lambda: svc.delete(started, "alice"))

        # fork 2: two children, in the table, which then differ
        before = {r.sandbox_id for r in svc.held.live("alice")}
        r = alice.post(f"/ui/sandboxes/{sid}/fork", data={"count": "2", "mode": "filesystem"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/sandboxes", r.text
        children = sorted({r.sandbox_id for r in svc.held.live("alice")} - before)
        try:
            assert len(children) == 2 and all(state(ui_admin, c) == "running" for c in children)
            table = alice.get("/ui/fragments/sandboxes").text
            assert all(c in table for c in children)
            assert run(alice, children[0], "echo one > /root/only").status_code == 200
            out = run(alice, children[1], "cat /root/f; test -e /root/only && echo leaked || echo apart").json()
            assert out["result"]["stdout"].split() == ["kept", "apart"], out
        finally:
            for c in children:
                ui_admin.call(lambda c=c: svc.delete(c, "alice"))

        # bad form input: a readable 4xx, nothing done
        for path, data, words in ((f"/ui/sandboxes/{sid}/fork", {"count": "0"}, "count"),
                                  (f"/ui/sandboxes/{sid}/fork", {"count": "21"}, "count"),
                                  (f"/ui/sandboxes/{sid}/fork", {"count": "x"}, "count"),
                                  (f"/ui/sandboxes/{sid}/fork", {"count": "2", "mode": "memory"}, "mode"),
                                  (f"/ui/sandboxes/{sid}/snapshot", {"mode": "full"}, "gvisor"),
                                  (f"/ui/sandboxes/{sid}/snapshot", {"name": "../x"}, "name")):
            r = alice.post(path, data=data)
            assert 400 <= r.status_code < 500 and words in r.text and "Traceback" not in r.text, (path, data, r.text)
        assert len(ui_admin.call(lambda: svc.snapshots("alice"))) == 1 and len(svc.held.live("alice")) == 1

        # another token: every action on alice's sandbox or snapshot is a 404, and changes nothing
        for path in ("pause", "resume", "snapshot", "fork"):
            r = bob.post(f"/ui/sandboxes/{sid}/{path}", data={"count": "1"})
            assert r.status_code == 404 and sid in r.text, (path, r.text)
        for path in ("start", "delete"):
            r = bob.post(f"/ui/snapshots/{snap.name}/{path}")
            assert r.status_code == 404 and snap.name in r.text, (path, r.text)
        # another site's page cannot make alice's browser act
        for path in (f"/ui/sandboxes/{sid}/pause", f"/ui/snapshots/{snap.name}/delete"):
            r = alice.post(path, headers={"sec-fetch-site": "cross-site"})
            assert r.status_code == 403, r.text
        assert state(ui_admin, sid) == "running"

        # delete: gone from the list; a second delete is a 404
        assert alice.post(f"/ui/snapshots/{snap.name}/delete").headers["location"] == "/ui/snapshots"
        assert snap.name not in alice.get("/ui/snapshots").text
        assert alice.post(f"/ui/snapshots/{snap.name}/delete").status_code == 404


def test_the_buttons_in_a_browser(ui_admin, browser, shots, alice_sandbox):
    sid = alice_sandbox.sandbox_id
    context, page = login(browser, ui_admin, "token-alice", shots, "snapshots")
    try:
        page.on("dialog", lambda dialog: dialog.accept())  # the delete button's confirm()
        page.goto(f"{ui_admin.url}/ui/sandboxes/{sid}")
        page.click("#pause")
        page.locator("#sandbox-state", has_text="paused").wait_for(timeout=WAIT_MS)
        assert page.locator("#resume").is_enabled() and page.locator("#pause").is_disabled()
        shots(page, "paused")
        page.click("#resume")
        page.locator("#sandbox-state", has_text="running").wait_for(timeout=WAIT_MS)
        page.fill("#snapshot-name", "from-browser")
        page.click("#snapshot")
        page.wait_for_url(f"{ui_admin.url}/ui/snapshots")
        row = page.locator("#snapshots tr[data-snapshot^='from-browser.']")
        assert row.count() == 1 and "filesystem" in row.inner_text()
        shots(page, "snapshots-list")
        page.goto(f"{ui_admin.url}/ui/sandboxes/{sid}")
        page.fill("#fork-count", "2")
        page.click("#fork")
        page.wait_for_url(f"{ui_admin.url}/ui/sandboxes")
        # the parent and its two children (the table also lists the module's ended sandboxes)
        page.locator("tr[data-sandbox]", has_text="running").nth(2).wait_for(timeout=WAIT_MS)
        assert page.locator("tr[data-sandbox]", has_text="running").count() == 3
        shots(page, "forked")
        page.goto(f"{ui_admin.url}/ui/snapshots")
        page.locator("#snapshots button[data-delete^='from-browser.']").click()
        page.wait_for_url(f"{ui_admin.url}/ui/snapshots")
        assert page.locator("#snapshots-total").inner_text() == "0 snapshots"
    finally:
        context.close()
        svc = ui_admin.ctx.sandboxes
        for r in [r for r in svc.held.live("alice") if r.sandbox_id != sid]:
            ui_admin.call(lambda r=r: svc.delete(r.sandbox_id, "alice"))
