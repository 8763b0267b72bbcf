"""The admin UI in a real browser: log in, watch a sandbox made through the SDK appear without
a reload, run `echo hi` in its terminal, download and upload a file, stop it, and check that
another token sees none of it. Then /metrics, parsed, against what the test did."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox

pytestmark = pytest.mark.bwrap
WAIT_MS = 30_000


def login(browser, admin, token: str, shot, name: str):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(admin.url + "/")
    assert "/ui/login" in page.url  # tokens are on: the overview needs one
    page.fill("#token", "not-a-token")
    page.click("#login-submit")
    assert page.locator("#login-error").inner_text() == "unknown token"
    page.fill("#token", token)
    shot(page, f"{name}-login")
    page.click("#login-submit")
    page.wait_for_url(admin.url + "/")
    return context, page


def terminal_lines(page) -> list[str]:
    return [line.strip() for line in page.locator("#terminal .xterm-rows > div").all_inner_texts()]


def metrics(admin, token: str | None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(admin.url + "/metrics", headers=headers)
    if r.status_code != 200:
        return {"status": r.status_code}
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_ui_end_to_end(ui_admin, browser, shots, tmp_path):
    before = metrics(ui_admin, "token-alice")
    context, page = login(browser, ui_admin, "token-alice", shots, "alice")
    shots(page, "overview-empty")
    page.goto(ui_admin.url + "/ui/sandboxes")
    assert page.locator("#table-total").inner_text() == "0 sandboxes"
    page.wait_for_selector("#live-state.on")  # the event stream is connected
    page.evaluate("window.__noReload = true")

    # A sandbox made through the SDK shows up in the open table without a reload.
    sdk = SyncSandbox(SandboxConfig(base_url=ui_admin.url, token="token-alice", memory="512m", cpus=1,
                                    user_id="ui-user", experiment_id="ui-exp"))
    sdk.start()
    try:
        sid = sdk.sandbox_id
        row = page.locator(f'tr[data-sandbox="{sid}"]')
        row.filter(has_text="running").wait_for()  # seen pending first, then running, as it happens
        assert "ui-exp" in row.inner_text() and "ui-user" in row.inner_text()
        assert page.evaluate("window.__noReload") is True
        shots(page, "table-live")
        assert sdk.arun("exit 3", session="default").exit_code == 3
        assert sdk.arun("true", session="default").exit_code == 0

        # Its page: the terminal runs `echo hi` over the stream socket and shows the output.
        row.locator("a").click()
        page.wait_for_selector('#terminal[data-ready="1"]')
        page.locator("#terminal").click()
        page.keyboard.type("echo hi")
        page.keyboard.press("Enter")
        page.wait_for_function("() => [...document.querySelectorAll('#terminal .xterm-rows > div')]"
                               ".some(d => d.textContent.trim() === 'hi')")
        assert "$ echo hi" in terminal_lines(page)
        # The command appears in the recent commands (pushed, not reloaded), exit code 0.
        cmd_row = page.locator("#commands tr", has_text="echo hi")
        cmd_row.wait_for()
        cells = cmd_row.locator("td").all_inner_texts()
        assert cells[1:3] == ["stream", "ui"] and cells[4] == "0", cells
        earlier = page.locator("#commands tr", has_text="exit 3").locator("td").all_inner_texts()
        assert earlier[1] == "run_in_session" and earlier[4] == "3", earlier
        # live usage arrives over the event stream
        page.wait_for_function("() => /^[0-9]+$/.test(document.querySelector('[data-stat=pids]').textContent)")
        shots(page, "terminal-echo-hi")

        # The file browser: down to a folder, download a file, upload one.
        sdk.write_bytes("/tmp/ui-files/hello.txt", b"hello from the sandbox\n")
        page.locator("#files a[data-files='/tmp']").click()
        page.locator("#files a[data-files='/tmp/ui-files']").click()
        page.locator("#files-path", has_text="/tmp/ui-files").wait_for()
        with page.expect_download() as download:
            page.locator("#files a[data-file='hello.txt']").click()
        saved = tmp_path / "hello.txt"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "hello.txt"
        assert saved.read_bytes() == b"hello from the sandbox\n"
        upload = tmp_path / "from-browser.bin"
        upload.write_bytes(bytes(range(256)) * 40)
        page.set_input_files("#upload input[type=file]", str(upload))
        page.click("#upload button[type=submit]")
        page.locator("#files a[data-file='from-browser.bin']").wait_for()
        assert sdk.read_bytes("/tmp/ui-files/from-browser.bin") == upload.read_bytes()
        shots(page, "files")

        # Stop from the page: the state changes here and for the SDK.
        page.click("#stop")
        page.locator("#sandbox-state", has_text="stopped").wait_for()
        assert page.locator("#history tr", has_text="stopped").count() >= 1
        assert sdk.get_status().is_alive is False
        shots(page, "stopped")

        # Another token sees none of it: not in the table, its page is a 404, its file too.
        context_b, page_b = login(browser, ui_admin, "token-bob", shots, "bob")
        page_b.goto(ui_admin.url + "/ui/sandboxes?state=stopped")
        assert page_b.locator("#table-total").inner_text() == "0 sandboxes"
        assert page_b.locator(f'tr[data-sandbox="{sid}"]').count() == 0
        shots(page_b, "bob-table")
        response = page_b.goto(f"{ui_admin.url}/ui/sandboxes/{sid}")
        assert response.status == 404 and sid in page_b.locator("#error-message").inner_text()
        shots(page_b, "bob-404")
        assert page_b.request.get(f"{ui_admin.url}/ui/sandboxes/{sid}/download?path=/tmp/ui-files/hello.txt").status == 404
        page.goto(ui_admin.url + "/ui/sandboxes?state=stopped")  # alice still sees hers
        page.locator(f'tr[data-sandbox="{sid}"]').wait_for()
        context_b.close()
        context.close()
    finally:
        sdk.stop()

    # /metrics against what happened above.
    assert metrics(ui_admin, None) == {"status": 401}
    after = metrics(ui_admin, "token-alice")

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("rock_sandbox_start_duration_seconds_count", phase="total", backend="bwrap") == 1
    assert grew("rock_sandbox_start_duration_seconds_count", phase="create", backend="bwrap") == 1
    assert grew("rock_warm_pool_requests_total", result="miss") == 1
    assert grew("rock_warm_pool_requests_total", result="hit") == 0
    assert value(after, "rock_sandboxes", state="stopped", backend="bwrap") == 1
    assert value(after, "rock_sandboxes", state="running") == 0
    route = "/ui/sandboxes/{sandbox_id}"
    assert grew("rock_http_request_duration_seconds_count", route=route + "/stop", method="POST", status="303") == 1
    assert grew("rock_http_request_duration_seconds_count", route=route + "/upload", method="POST", status="303") == 1
    assert grew("rock_http_request_duration_seconds_count", route=route + "/download", status="200") == 1
    assert grew("rock_http_request_duration_seconds_count", route=route + "/download", status="404") == 1
    assert grew("rock_http_request_duration_seconds_count", route=route, status="404") == 1
    assert grew("rock_http_request_duration_seconds_count", route="/apis/envs/sandbox/v1/start_async") == 1
    assert grew("rock_http_request_duration_seconds_count", route="/apis/envs/sandbox/v1/run_in_session",
                status="200") == 2
    # no label carries a sandbox id or a raw path
    assert not [k for k in after if any(sid in v for _, v in k[1])]
