"""The admin UI's page time with 1,000 sandbox records in the store.

ui_page_p50  one record per page: the overview (``/``), the sandboxes table (``/ui/sandboxes``,
             newest 50 of the 1,000, a few of them running so their live usage is read) and the
             table filtered by state and image; each timed as a browser's GET of the whole HTML.
             Target: p50 <= 200 ms. Floor: ``GET /health`` of the same admin, timed in the same
             alternating blocks (this VM's speed drifts within a minute).

ui_browser_first_paint / ui_browser_interactive  in Debian's chromium (Playwright): a rollout page of a
             200-call trajectory (token ids, the whole history in each call) and a job page of 1,000 rollouts,
             against the sandbox list page; first contentful paint, and the moment the page has drawn its data
             and its main thread is free (``browser_bench``). Alternating blocks.
ui_browser_tokens_shown  the rollout pages: the moment their token rows are drawn once the tokens section is
             scrolled into view (the ids come in parts as they come into view), against the list's interactive.

The records are written into the admin's store before it starts, as a long-lived admin has
them; the admin is ``rock admin start`` in its own process, as users run it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import httpx

from bench.admin import SANDBOX_API, AdminProcess
from bench.report import record
from bench.sdk import usable
from rock.admin.store import SandboxRecord
from rock.admin.store.backends import open_store
from rock.agentic.record import RolloutRecord

RECORDS = 1000
RUNNING = 5
TARGET_MS = 200.0
PAGES = {"overview": "/", "sandboxes": "/ui/sandboxes",
         "sandboxes_filtered": "/ui/sandboxes?state=stopped&image=bench:img-3"}


async def fill_store(state_dir: str, n: int) -> None:
    """``n`` finished sandboxes of 10 images, 20 users and 8 experiments, stopped within the last
    20 hours (the admin deletes a sandbox stopped longer than auto_delete_seconds, 24 h, when it starts)."""
    rng = random.Random(7)
    store = open_store(None, Path(state_dir))  # the embedded store the admin will open
    await store.open()
    try:
        now = time.time()
        saves = []
        for i in range(n):
            created = now - rng.uniform(700, 20 * 3600)
            state = rng.choice(["stopped", "stopped", "stopped", "failed"])
            r = SandboxRecord(
                sandbox_id=f"bench{i:05d}", state=state, image=f"bench:img-{i % 10}", user_id=f"user-{i % 20}",
                experiment_id=f"exp-{i % 8}", namespace="bench", backend="bwrap", cpus=1.0, memory="1g",
                auto_clear_seconds=300, created_at=created, started_at=created + 0.2, stopped_at=created + 600,
                last_used_at=created + 500, spec={"image": f"bench:img-{i % 10}", "memory": "1g", "cpus": 1.0},
                failure_reason="agent exited" if state == "failed" else None)
            saves.append(store.save(r, None, "create"))
        await asyncio.gather(*saves)
    finally:
        await store.close()


def _time_get(client: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        elapsed = time.perf_counter() - t0
        r.raise_for_status()
        out.append(elapsed)
    return out


async def _bench(ctx, backend: str) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-ui-")
    await fill_store(admin.state, RECORDS)
    url = admin.start()
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(RUNNING):  # real sandboxes on the table's first page
                client.post(SANDBOX_API + "/start", json={"memory": "256m", "cpus": 0.5}).raise_for_status()
            listed = client.get(SANDBOX_API + "/sandboxes", params={"page_size": 1}).json()["result"]["total"]
            ctx.progress(f"ui {backend}: {listed} sandbox records listed; timing pages")
            for path in PAGES.values():  # warm-up: templates compiled, connections open
                _time_get(client, path, 3)
            samples = {name: [] for name in PAGES}
            floor: list[float] = []
            blocks, per_block = ctx.n(4, 12), ctx.n(5, 10)
            for _ in range(blocks):
                floor += _time_get(client, "/health", per_block)
                for name, path in PAGES.items():
                    samples[name] += _time_get(client, path, per_block)
            sizes = {name: len(client.get(path).content) for name, path in PAGES.items()}
    finally:
        await asyncio.to_thread(admin.stop)
    records = []
    for name, s in samples.items():
        rec = record("ui_page_p50", backend, s, floor_s=floor, page=name, records=listed, html_bytes=sizes[name],
                     target_ms=TARGET_MS)
        rec["meets_target"] = rec["p50_ms"] is not None and rec["p50_ms"] <= TARGET_MS
        records.append(rec)
    return records


async def run(ctx) -> list[dict]:
    # One backend is enough: the pages read the admin's memory, not the sandboxes (bwrap first:
    # its few running sandboxes start in milliseconds).
    backends = sorted(usable(ctx), key=lambda b: b != "bwrap")[:1]
    records = []
    for backend in backends:
        records += await _bench(ctx, backend)
    records += await browser_bench(ctx, backends[0] if backends else "bwrap")
    return records


# -- In a browser: first paint and interactive for the rollout and job pages --------------------------------------

CALLS = 200  # the trajectory's model calls
JOB_ROLLOUTS = 1000
CHROMIUM = "/usr/bin/chromium"
# In the page, after the load event: the time (from navigation start) of the first contentful paint, and of the
# moment the page is drawn and answers input (its own data drawn, ``body[data-ready]``, where it fetches any,
# then a frame and an empty task: the main thread is free).
MEASURE_JS = """async () => {
  if (document.getElementById("calls")) {
    while (document.body.dataset.ready !== "1") await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const interactive = performance.now();
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const nodes = document.getElementsByTagName("*").length;
  let tokens = null;
  const box = document.getElementById("tokens");
  if (box) {  // a rollout page: its tokens scrolled into view, until their first rows are drawn
    box.scrollIntoView();
    while (!box.querySelector(".tok") && !box.classList.contains("empty")) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    tokens = performance.now();
  }
  return {fcp: fcp ? fcp.startTime : null, interactive, tokens, nodes};
}"""


def _call(i: int, extend: bool = True) -> dict:
    """Model call ``i`` (1-based) of a long trajectory, as the admin records it: the whole history in the request,
    a tool call in the answer, token ids and logprobs; each prompt extends the last (one token sequence), or
    with ``extend=False`` none does (the history re-rendered every turn: a sequence per call, 2.4M tokens in all)."""
    msgs = [{"role": "system", "content": "You fix bugs in this repository. " * 8},
            {"role": "user", "content": "The tests in tests/test_calc.py fail; make them pass. " * 4}]
    for k in range(1, i):
        msgs += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": f"call_{k}", "type": "function",
                      "function": {"name": "bash", "arguments": json.dumps({"command": f"sed -n {k},+20p calc.py"})}}]},
                 {"role": "tool", "tool_call_id": f"call_{k}", "content": f"line {k}: def f{k}(a, b): return a - b\n" * 4}]
    prompt = list(range(100))  # the system prompt and the task, then each earlier answer and its tool's result
    for k in range(1, i):
        prompt += [1000 + 100 * k + j for j in range(30)] + [50_000 + 100 * k + j for j in range(30)]
    if not extend:
        prompt[0] = 7 + i
    completion = [1000 + 100 * i + j for j in range(30)]
    tool = {"id": f"call_{i}", "type": "function",
            "function": {"name": "bash", "arguments": json.dumps({"command": f"sed -n {i},+20p calc.py"})}}
    return {"sandbox_id": "bench", "index": i, "mode": "proxy", "model": "m", "stream": True, "status": "success",
            "http_status": 200, "error": None, "start_time": float(i), "end_time": i + 0.5, "latency_ms": 500.0,
            "request": {"model": "m", "messages": msgs, "tools": [{"type": "function", "function": {"name": "bash"}}]},
            "response": {"choices": [{"index": 0, "finish_reason": "tool_calls",
                                      "message": {"role": "assistant", "content": None, "tool_calls": [tool]}}]},
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(completion)},
            "prompt_token_ids": prompt, "token_ids": [completion],
            "logprobs": [{"content": [{"logprob": -0.1 * (k % 7)} for k in range(len(completion))]}],
            "attempts": 1, "native": None, "answered_via": "upstream"}


def _rollout(n: int, calls: list[dict]) -> RolloutRecord:
    reward = float(n % 3 == 0)
    body = {"suite": "bench", "task_id": f"task-{n % 250:03d}", "category": "bench", "instruction": "Fix calc.add.",
            "harness": {"name": "opencode", "policy": "openai", "exit_code": 0, "output": "done", "error": None},
            "policy": "openai", "model_calls": calls, "diff": "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-a - b\n+a + b\n",
            "ignored_paths": [], "reward": reward, "resolved": bool(reward), "pass_rate": reward, "passed": bool(reward),
            "error": None if n % 17 else "the agent was killed by SIGKILL (exit 137)",
            "tests": {"runner": "script", "exit_code": 0, "timed_out": False, "output": "ok", "reward_txt": "1"},
            "timings": {"agent_setup_ms": 900.0, "harness_run_ms": 2000.0, "agent_ms": 2400.0, "diff_ms": 50.0,
                        "verify_wait_ms": 10.0, "tests_ms": 700.0, "verify_ms": 1100.0, "total_ms": 4500.0},
            "agent_sandbox": None, "verifier_sandbox": None}
    return RolloutRecord.model_validate(body)


async def _jobs(url: str) -> tuple[str, str]:
    """A job of two rollouts with a CALLS-call trajectory (one token sequence; a sequence per call), and a job of
    JOB_ROLLOUTS short rollouts; their ids."""
    from rock.agentic.tasks.report import JobReport

    long_job = JobReport(url)
    big_job = JobReport(url)
    try:
        await long_job.open("bench", "opencode", "openai", 2, "m")
        await long_job.add(_rollout(0, [_call(i) for i in range(1, CALLS + 1)]))
        await long_job.add(_rollout(1, [_call(i, extend=False) for i in range(1, CALLS + 1)]))
        await long_job.end({"tasks": 1})
        await big_job.open("bench", "opencode", "openai", JOB_ROLLOUTS, "m")
        for start in range(0, JOB_ROLLOUTS, 50):
            await asyncio.gather(*(big_job.add(_rollout(n, [_call(1), _call(2)]))
                                   for n in range(start, min(start + 50, JOB_ROLLOUTS))))
        await big_job.end({"tasks": JOB_ROLLOUTS})
    finally:
        await long_job.aclose()
        await big_job.aclose()
    assert long_job.job_id and big_job.job_id, "the admin did not record the bench's jobs"
    return long_job.job_id, big_job.job_id


def _browse(url: str, pages: dict[str, str], blocks: int, per_block: int, progress) -> dict[str, dict[str, list]]:
    """Each page loaded ``per_block`` times per block, the pages in turn within a block (alternating blocks); per
    page the samples of first paint and interactive (seconds) and the page's element count."""
    from playwright.sync_api import sync_playwright

    out = {name: {"fcp": [], "interactive": [], "tokens": [], "nodes": []} for name in pages}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for path in pages.values():  # warm-up: templates compiled, scripts cached
                page = context.new_page()
                page.goto(url + path, wait_until="load", timeout=120_000)
                page.evaluate(MEASURE_JS)
                page.close()
            for b in range(blocks):
                for name, path in pages.items():
                    for _ in range(per_block):
                        page = context.new_page()
                        page.goto(url + path, wait_until="load", timeout=120_000)
                        got = page.evaluate(MEASURE_JS)
                        page.close()
                        out[name]["fcp"].append((got["fcp"] or got["interactive"]) / 1000)
                        out[name]["interactive"].append(got["interactive"] / 1000)
                        out[name]["nodes"].append(got["nodes"])
                        if got["tokens"] is not None:
                            out[name]["tokens"].append(got["tokens"] / 1000)
                progress(f"ui browser: block {b + 1}/{blocks}")
        finally:
            browser.close()
    return out


async def browser_bench(ctx, backend: str = "bwrap") -> list[dict]:
    """``ui_browser_first_paint`` / ``ui_browser_interactive``: the rollout page of a 200-call trajectory and
    the job page of 1,000 rollouts, against the sandbox list page (1,000 sandbox records, as ``ui_page_p50``
    has them), each loaded by Debian's chromium through Playwright, alternating blocks."""
    import os

    if not os.path.exists(CHROMIUM):
        ctx.progress(f"ui browser: no chromium at {CHROMIUM}; skipped")
        return []
    admin = AdminProcess(backend, prefix="rock-bench-ui-")
    await fill_store(admin.state, RECORDS)
    url = admin.start()
    try:
        long_id, big_id = await _jobs(url)
        pages = {"sandboxes": "/ui/sandboxes", "rollout_200_calls": f"/ui/jobs/{long_id}/rollouts/0",
                 "rollout_200_calls_resequenced": f"/ui/jobs/{long_id}/rollouts/1",
                 "job_1000_rollouts": f"/ui/jobs/{big_id}"}
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            sizes = {name: len((await client.get(path)).content) for name, path in pages.items()}
            for n, name in enumerate(("rollout_200_calls", "rollout_200_calls_resequenced")):
                sizes[name + "_data"] = len((await client.get(f"/ui/jobs/{long_id}/rollouts/{n}/data.json")).content)
        samples = await asyncio.to_thread(_browse, url, pages, ctx.n(3, 6), ctx.n(3, 5), ctx.progress)
    finally:
        await asyncio.to_thread(admin.stop)
    records = []
    for name, s in samples.items():
        extra = {"page": name, "html_bytes": sizes[name], "elements_p50": sorted(s["nodes"])[len(s["nodes"]) // 2]}
        if name + "_data" in sizes:
            extra["data_json_bytes"] = sizes[name + "_data"]
        for metric, key in (("ui_browser_first_paint", "fcp"), ("ui_browser_interactive", "interactive")):
            floor = samples["sandboxes"][key] if name != "sandboxes" else None
            records.append(record(metric, backend, s[key], floor_s=floor, **extra))
        if s["tokens"]:  # a rollout page: until its token rows are drawn, against the sandbox list's interactive
            records.append(record("ui_browser_tokens_shown", backend, s["tokens"],
                                  floor_s=samples["sandboxes"]["interactive"], **extra))
    return records
