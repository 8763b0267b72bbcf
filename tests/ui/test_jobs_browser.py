"""The UI's rollout jobs in a real browser: jobs recorded through the job runner's own client
(``rock.agentic.tasks.report.JobReport``, what ``rock job run`` uses) appear in the Jobs table; a running
job's page and the table follow its rollouts without a reload; a finished job's page shows the reward
distribution, per-task pass rates, phases and filters by reward, error, harness and task; a rollout with
token ids shows the policy's tokens under the loss mask with logprobs on hover, its calls (a virtual list:
a 1500-call trajectory keeps a few dozen rows in the page), diff (a 40 MB one: its first lines), tests and
waterfall; two rollouts side by side; its agent sandbox links to it; another token's job is missing (404)
on every page and route; /metrics has the rollouts' phases."""

from __future__ import annotations

import asyncio
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rock.agentic.record import RolloutRecord
from rock.agentic.tasks.report import JobReport
from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox
from tests.ui.conftest import SHOTS

pytestmark = pytest.mark.bwrap
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def shots():
    """Screenshots in SHOTS/jobs/ (beside, not over, the other browser tests')."""
    folder = SHOTS / "jobs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    taken = []

    def shot(page, name: str):
        taken.append(folder / f"{len(taken) + 1:02d}-{name}.png")
        page.screenshot(path=str(taken[-1]), full_page=True)

    yield shot
    assert taken, "the browser test wrote no screenshot"


def call(index: int, prompt: list[int], completion: list[int], logprobs: list[float] | None, text: str,
         tool: dict | None = None, latency: float = 120.0) -> dict:
    """A model call as the admin records it (``rock.actions.records.CallRecord``), with token ids."""
    message = {"role": "assistant", "content": text, **({"tool_calls": [tool]} if tool else {})}
    msgs = [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "Fix calc.add."}]
    if index > 1:
        msgs += [{"role": "assistant", "content": None, "tool_calls": [TOOL]},
                 {"role": "tool", "tool_call_id": "call_1", "content": "patched"}]
    return {"sandbox_id": "x", "index": index, "mode": "proxy", "model": "my-model", "stream": False,
            "status": "success", "http_status": 200, "error": None, "start_time": 1.0, "end_time": 1.1,
            "latency_ms": latency, "request": {"model": "my-model", "messages": msgs,
                                               "tools": [{"type": "function", "function": {"name": "bash"}}]},
            "response": {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]},
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(completion)},
            "prompt_token_ids": prompt, "token_ids": [completion],
            "logprobs": [{"content": [{"logprob": lp} for lp in logprobs]} if logprobs else None],
            "attempts": 1, "native": None, "answered_via": "upstream"}


TOOL = {"id": "call_1", "type": "function",
        "function": {"name": "bash", "arguments": '{"command": "sed -i s/-/+/ calc.py"}'}}
DIFF = ("diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
        "-    return a - b\n+    return a + b\n")


def rollout(task: str, reward: float, harness: str = "opencode", error: str | None = None, calls=(),
            sandbox: str | None = None, diff: str = DIFF) -> RolloutRecord:
    body = {"suite": "my-tasks", "task_id": task, "category": "my-tasks", "instruction": f"Fix {task}: add must add.",
            "harness": {"name": harness, "policy": "openai", "exit_code": 0 if not error else 137,
                        "output": "agent done", "error": error},
            "policy": "openai", "model_calls": list(calls), "diff": diff if reward else "",
            "ignored_paths": ["tests/test_calc.py"], "reward": reward, "resolved": reward == 1.0,
            "pass_rate": reward, "passed": reward == 1.0, "error": error,
            "tests": None if error else {"runner": "pytest", "exit_code": 0 if reward == 1.0 else 1,
                                         "timed_out": False, "output": "2 passed" if reward == 1.0 else "1 failed",
                                         "reward_txt": "", "fail_to_pass": {"passed": int(reward), "of": 1,
                                                                            "failed": [] if reward else ["test_add"]}},
            "timings": {"agent_setup_ms": 900.0, "harness_install_ms": 300.0, "harness_run_ms": 2000.0,
                        "agent_ms": 2400.0, "diff_ms": 50.0, "verify_wait_ms": 10.0, "tests_ms": 700.0,
                        "verify_ms": 1100.0, "total_ms": 4500.0},
            "agent_sandbox": sandbox, "verifier_sandbox": None}
    return RolloutRecord.model_validate(body)


def send(admin, token: str, *steps, job_id: str | None = None) -> JobReport:
    """Run ``steps`` (coroutine functions of a JobReport, of job ``job_id`` when given) in order through one report,
    in a thread of its own (Playwright's sync API holds this one's event loop); the report."""
    async def go():
        report = JobReport(admin.url, token)
        report.job_id = job_id
        try:
            for step in steps:
                await step(report)
        finally:
            await report.aclose()
        return report

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def login(browser, admin, token: str):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(admin.url + "/ui/login?next=/ui/jobs")
    page.fill("#token", token)
    page.click("#login-submit")
    page.wait_for_url(admin.url + "/ui/jobs")
    return context, page


def test_jobs_and_rollouts_in_the_browser(ui_admin, browser, shots, tmp_path):
    box = SyncSandbox(SandboxConfig(base_url=ui_admin.url, token="token-alice", memory="256m", cpus=1))
    box.start()
    try:
        _jobs_and_rollouts(ui_admin, browser, shots, tmp_path, box.sandbox_id)
    finally:
        box.stop()


def _jobs_and_rollouts(admin, browser, shots, tmp_path, sandbox_id):
    # a finished job: a resolved rollout with token ids (call 2 extends call 1), a killed one, another harness's
    calls = [call(1, [1, 2, 3, 4], [50, 51, 52], [-0.1, -0.25, -0.5], "", TOOL),
             call(2, [1, 2, 3, 4, 50, 51, 52, 60, 61], [70, 71], [-0.05, -1.5], "The fix is in.")]
    records = [rollout("fix-add", 1.0, calls=calls, sandbox=sandbox_id),
               rollout("fix-sub", 0.0, error="the agent was killed by SIGKILL (exit 137): most often the "
                                             "out-of-memory killer"),
               rollout("fix-mul", 0.5, harness="ours")]

    async def finish(report):
        await report.open("my-tasks", "opencode", "openai", len(records), "my-model")
        for rec in records:
            await report.add(rec)
        await report.end({"tasks": 3, "mean_reward": 0.5})

    done = send(admin, "token-alice", finish).job_id
    assert done and done.startswith("job-")

    context, page = login(browser, admin, "token-alice")
    page.wait_for_selector("#live-state.on")
    row = page.locator(f'tr[data-job="{done}"]')
    assert "ended" in row.inner_text() and "3 / 3" in row.inner_text() and "0.500" in row.inner_text()
    shots(page, "jobs-table")

    # the job page: distribution, per task, phases, rollouts
    row.locator("a").click()
    page.wait_for_selector("#job-id")
    assert page.locator("#job-state").inner_text() == "ended"
    assert page.locator("#job-mean").inner_text() == "0.500" and page.locator("#job-errors").inner_text() == "1"
    assert [page.locator(f'#histogram [data-bin="{b}"]').inner_text() for b in (0, 5, 9)] == ["1", "1", "1"]
    assert "100 %" in page.locator('#tasks tr[data-task="fix-add"]').inner_text()
    assert "SIGKILL" in page.locator('#tasks tr[data-task="fix-sub"]').inner_text()
    assert page.locator('#phases tr[data-phase="agent_ms"]').inner_text().endswith("2400 ms")
    assert page.locator("#rollouts tbody tr").count() == 3
    shots(page, "job-finished")

    # filters: by error, reward, harness, task
    def shown(query: str) -> list[str]:
        page.goto(f"{admin.url}/ui/jobs/{done}?{query}")
        return sorted(page.locator("#rollouts tbody tr[data-rollout]").evaluate_all(
            "rows => rows.map(r => r.children[1].textContent)"))

    assert shown("error=yes") == ["fix-sub"]
    assert shown("error=no") == ["fix-add", "fix-mul"]
    assert shown("reward_min=0.4&reward_max=0.9") == ["fix-mul"]
    assert shown("harness=ours") == ["fix-mul"]
    assert shown("task=add") == ["fix-add"]
    page.goto(f"{admin.url}/ui/jobs/{done}")
    page.select_option("select[name=error]", "yes")
    page.click("#filter")
    page.wait_for_url("**error=yes**")
    assert page.locator("#rollouts-shown").inner_text() == "1 of 3 rollouts"
    shots(page, "job-filtered")
    bad = page.goto(f"{admin.url}/ui/jobs/{done}?reward_min=2")
    assert bad.status == 400 and "reward_min" in page.locator("#error-message").inner_text()

    # downloads: the records and the training export
    page.goto(f"{admin.url}/ui/jobs/{done}")
    with page.expect_download() as dl:
        page.click("#download-records")
    saved = tmp_path / "records.jsonl"
    dl.value.save_as(saved)
    assert [json.loads(line) for line in saved.read_text().splitlines()] == [r.to_json() for r in records]
    with page.expect_download() as dl:
        page.click("#download-training")
    dl.value.save_as(tmp_path / "training.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "training.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r["task_id"] == "fix-add")
    assert first["token_ids"] == [1, 2, 3, 4, 50, 51, 52, 60, 61, 70, 71]
    assert first["loss_mask"] == [0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1]

    # the rollout: instruction, calls, tokens under the mask, diff, tests, waterfall
    page.goto(f"{admin.url}/ui/jobs/{done}/rollouts/0")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#instruction").inner_text() == "Fix fix-add: add must add."
    assert page.locator("#calls .call-row").count() == 2
    assert "bash(" in page.locator('#calls .call-row[data-index="1"]').inner_text()
    page.locator('#calls .call-row[data-index="2"]').click()
    detail = page.locator("#call-detail")
    assert detail.get_attribute("data-call") == "2" and "The fix is in." in detail.inner_text()
    assert "patched" in detail.inner_text()  # the tool's result is among the messages call 2 added
    # the token ids are not in the page's data: they come in parts once the tokens scroll into view
    data = page.request.get(f"{admin.url}/ui/jobs/{done}/rollouts/0/data.json").json()
    assert data["tokens"]["sequences"][0]["length"] == 11 and "token_ids" not in data["tokens"]["sequences"][0]
    part = page.request.get(f"{admin.url}/ui/jobs/{done}/rollouts/0/tokens/0?offset=4&limit=3").json()
    assert (part["token_ids"], part["loss_mask"], part["length"]) == ([50, 51, 52], [1, 1, 1], 11)
    assert page.request.get(f"{admin.url}/ui/jobs/{done}/rollouts/0/tokens/1").status == 404  # one sequence
    assert page.request.get(f"{admin.url}/ui/jobs/{done}/rollouts/0/tokens/0?limit=0").status in (400, 422)
    page.locator("#tokens").scroll_into_view_if_needed()
    page.locator("#tokens .tok").first.wait_for()
    masked = page.locator('#tokens .tok[data-mask="1"]')
    assert masked.evaluate_all("ts => ts.map(t => +t.textContent)") == [50, 51, 52, 70, 71]
    assert page.locator('#tokens .tok[data-mask="0"]').evaluate_all("ts => ts.map(t => +t.textContent)") == \
        [1, 2, 3, 4, 60, 61]
    masked.nth(4).hover()
    assert masked.nth(4).get_attribute("title") == "token 10 · id 71 · mask 1 · logprob -1.5000"
    assert "starts: first" in page.locator("#tokens .seq-head").inner_text()
    assert page.locator("#diff .d-add").inner_text() == "+    return a + b"
    assert page.locator("#diff .d-del").inner_text() == "-    return a - b"
    assert "tests/test_calc.py" in page.locator("#ignored").inner_text()
    assert "1 / 1" in page.locator("#tests").inner_text() and page.locator("#tests-output").inner_text() == "2 passed"
    assert page.locator("#waterfall .wf-row").count() == 8
    assert page.locator("#harness-exit").inner_text().startswith("policy openai · exit 0")
    shots(page, "rollout-tokens")

    # the killed rollout says why, and that its tests never ran
    page.goto(f"{admin.url}/ui/jobs/{done}/rollouts/1")
    assert "SIGKILL (exit 137)" in page.locator("#rollout-error").inner_text()
    assert page.locator("#tests-none").is_visible()

    # two rollouts side by side
    page.goto(f"{admin.url}/ui/jobs/{done}/rollouts/0")
    page.select_option("#compare-with", "1")
    page.click("#compare")
    page.wait_for_url(f"**/ui/jobs/{done}/compare?a=0&b=1")
    assert page.locator("#side-0 .reward").inner_text() == "reward 1.00"
    assert page.locator("#side-0 .calls-compact li").count() == 2 and page.locator("#side-0 .d-add").count() == 1
    assert "SIGKILL" in page.locator("#side-1 .error").inner_text()
    assert page.locator("#side-1 .tests").inner_text() == "did not run"
    shots(page, "compare")

    # the sandbox links to the rollout it ran, and back
    page.goto(f"{admin.url}/ui/sandboxes/{sandbox_id}")
    page.locator("#sandbox-rollout a").click()
    page.wait_for_url(f"**/ui/jobs/{done}/rollouts/0")
    assert page.locator("#agent-sandbox").inner_text() == sandbox_id

    # a running job: its page and the table follow each rollout without a reload
    job_id = send(admin, "token-alice", lambda r: r.open("my-tasks", "ours", "openai", 3)).job_id

    def add(rec):
        send(admin, "token-alice", lambda r: r.add(rec), job_id=job_id)

    add(rollout("fix-a", 1.0, harness="ours"))
    page.goto(f"{admin.url}/ui/jobs/{job_id}")
    page.wait_for_selector("#live-state.on")
    assert page.locator("#job-progress").inner_text() == "1 / 3"
    assert page.locator("#job-state").inner_text() == "running"
    page.evaluate("window.__noReload = true")
    add(rollout("fix-b", 0.0, harness="ours"))
    page.locator("#job-progress", has_text="2 / 3").wait_for()
    assert page.locator("#job-mean").inner_text() == "0.500"
    assert page.evaluate("window.__noReload") is True
    shots(page, "job-running")
    page.goto(f"{admin.url}/ui/jobs")
    page.wait_for_selector("#live-state.on")
    page.evaluate("window.__noReload = true")
    add(rollout("fix-c", 1.0, harness="ours"))
    page.locator(f'tr[data-job="{job_id}"] .progress-cell', has_text="3 / 3").wait_for()
    send(admin, "token-alice", lambda r: r.end({"tasks": 3}), job_id=job_id)
    page.locator(f'tr[data-job="{job_id}"]', has_text="ended").wait_for()
    assert page.evaluate("window.__noReload") is True
    shots(page, "jobs-live")

    # a large trajectory stays a virtual list: 1500 calls, a few dozen rows in the page
    many = [call(i, [1, 2], [3], [-0.1], f"step {i}", latency=float(i)) for i in range(1, 1501)]
    big = send(admin, "token-alice", lambda r: r.open("my-tasks", "ours", "openai", 1),
               lambda r: r.add(rollout("big", 1.0, calls=many, diff=DIFF * 1000))).job_id
    page.goto(f"{admin.url}/ui/jobs/{big}/rollouts/0")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#calls .call-row").count() < 60
    page.locator("#calls").evaluate("el => el.scrollTop = el.scrollHeight")
    page.locator('#calls .call-row[data-index="1500"]').wait_for()
    assert page.locator("#calls .call-row").count() < 60
    assert page.locator("#diff-count").inner_text().startswith("7000 lines, the first 5000 shown")
    # its 1500 token sequences: heads only in the page's data; a part's ids come when it scrolls into view
    seqs = page.request.get(f"{admin.url}/ui/jobs/{big}/rollouts/0/data.json").json()["tokens"]["sequences"]
    assert len(seqs) > 1 and all("token_ids" not in q for q in seqs)
    tokens = page.locator("#tokens")
    tokens.scroll_into_view_if_needed()
    # scrolled to the end again on each poll: the list is drawn (and so has its full height) only
    # once the page sees the section in view, which a loaded machine may not have done yet
    page.wait_for_function("""last => {
        const el = document.querySelector('#tokens');
        el.scrollTop = el.scrollHeight;
        return [...el.querySelectorAll('.seq-head')].some(h => h.textContent.startsWith('sequence ' + last + ' '));
    }""", arg=len(seqs) - 1)
    page.locator(f'#tokens .tok[data-pos="{seqs[-1]["length"] - 1}"]').last.wait_for()
    page.wait_for_function("() => !document.querySelector('#tokens .tok-row.loading')")
    assert page.locator("#tokens .vrow").count() < 60
    shots(page, "rollout-large")

    # a 40 MB diff: the runner's copy for the admin is cut under its body limit, the page renders its first lines
    huge = "+" + "x" * 99 + "\n"
    send(admin, "token-alice", lambda r: r.add(rollout("huge", 1.0, diff=huge * 400_000)), job_id=big)
    page.goto(f"{admin.url}/ui/jobs/{big}/rollouts/1")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#diff .d-add").count() == 5000
    assert " lines, the first 5000 shown" in page.locator("#diff-count").inner_text()

    # a job of 130 rollouts lists 100 a page (the cards, histogram and per-task table count all 130); the pages,
    # the filters and the order are the server's
    def many_rollouts(r):
        return asyncio.gather(*(r.add(rollout(f"pg-{k % 13:02d}", (k % 10) / 10, harness="pager")) for k in range(130)))

    paged = send(admin, "token-alice", lambda r: r.open("my-tasks", "pager", "openai", 130), many_rollouts,
                 lambda r: r.end({"tasks": 130})).job_id
    page.goto(f"{admin.url}/ui/jobs/{paged}")
    assert page.locator("#rollouts tbody tr[data-rollout]").count() == 100
    assert page.locator("#rollouts-shown").inner_text() == "130 of 130 rollouts"
    assert "page 1 of 2" in page.locator("#rollouts-page").inner_text()
    assert page.locator("#job-progress").inner_text().startswith("130")
    assert sum(int(page.locator(f'#histogram [data-bin="{b}"]').inner_text()) for b in range(10)) == 130
    assert page.locator("#tasks tbody tr").count() == 13
    shots(page, "job-paged")
    page.click("#page-next")
    page.wait_for_url("**page=2**")
    assert page.locator("#rollouts tbody tr[data-rollout]").count() == 30
    assert page.locator("#page-prev").is_visible() and page.locator("#page-next").count() == 0
    page.goto(f"{admin.url}/ui/jobs/{paged}?reward_min=0.85&sort=-reward")
    assert page.locator("#rollouts-shown").inner_text() == "13 of 130 rollouts"
    assert page.locator("#rollouts-page").count() == 0
    assert page.locator("#rollouts tbody tr[data-rollout]").evaluate_all(
        "rows => rows.map(r => r.children[3].textContent)") == ["0.90"] * 13
    page.goto(f"{admin.url}/ui/jobs/{paged}?sort=reward&page=2")
    rewards = page.locator("#rollouts tbody tr[data-rollout]").evaluate_all(
        "rows => rows.map(r => +r.children[3].textContent)")
    assert len(rewards) == 30 and rewards == sorted(rewards) and rewards[-1] == 0.9
    assert page.goto(f"{admin.url}/ui/jobs/{paged}?sort=bogus").status == 400

    # another token: no job of alice's in its table, and every page and route of one is missing
    context_b, page_b = login(browser, admin, "token-bob")
    assert page_b.locator(f'tr[data-job="{done}"]').count() == 0
    assert page_b.locator("#jobs-total").inner_text() == "0 jobs"
    for path in (f"/ui/jobs/{done}", f"/ui/jobs/{done}/rollouts/0", f"/ui/jobs/{done}/compare?a=0&b=1"):
        response = page_b.goto(admin.url + path)
        assert response.status == 404 and done in page_b.locator("#error-message").inner_text()
    shots(page_b, "bob-job-404")
    for path in (f"/ui/jobs/{done}/rollouts/0/data.json", f"/ui/jobs/{done}/training.jsonl",
                 f"/ui/jobs/{done}/rollouts/0/tokens/0", f"/ui/jobs/{done}/rollouts/0/tokens/0?offset=4&limit=3",
                 f"/ui/fragments/jobs/{done}", f"/apis/v1/jobs/{done}/export"):
        assert page_b.request.get(admin.url + path).status == 404, path
    bob = {"authorization": "Bearer token-bob"}
    assert httpx.get(f"{admin.url}/apis/v1/jobs/{done}", headers=bob).status_code == 404
    assert httpx.post(f"{admin.url}/apis/v1/jobs/{done}/rollouts", headers=bob, json={}).status_code == 404
    assert httpx.get(f"{admin.url}/apis/v1/jobs", headers=bob).json()["result"] == []
    # the control: alice's token reads it
    alice = {"authorization": "Bearer token-alice"}
    assert httpx.get(f"{admin.url}/apis/v1/jobs/{done}", headers=alice).json()["result"]["done"] == 3
    assert httpx.get(f"{admin.url}/ui/jobs/{done}/rollouts/0/tokens/0", headers=alice).json()["length"] == 11
    context_b.close()
    context.close()

    # /metrics: each recorded rollout's phases in the phase histogram, by harness
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(httpx.get(f"{admin.url}/metrics", headers=alice).text)
               for s in f.samples}
    count = "rock_rollout_phase_duration_seconds_count"
    assert samples[(count, (("harness", "opencode"), ("phase", "agent")))] == 4  # fix-add, fix-sub, big, huge
    assert samples[(count, (("harness", "ours"), ("phase", "tests")))] == 4  # fix-mul, fix-a, fix-b, fix-c
    assert samples[("rock_rollout_phase_duration_seconds_sum", (("harness", "opencode"), ("phase", "agent")))] == \
        pytest.approx(4 * 2.4)
