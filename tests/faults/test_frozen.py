"""A sandbox whose processes are all stopped (SIGSTOP): calls into it end with a clear error at
their deadline instead of hanging, the admin serves others meanwhile, and stop/delete still work."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest

from tests.faults.conftest import backends, sandbox_pids

REPLY_TIMEOUT = 2  # ROCK_AGENT_REPLY_TIMEOUT for this admin: how long a call without a timeout waits


@pytest.mark.parametrize("backend", backends())
def test_stopped_sandbox(admin_process, backend):
    admin = admin_process(backend, env={"ROCK_AGENT_REPLY_TIMEOUT": str(REPLY_TIMEOUT)}).start()
    frozen = admin.start_sandbox()
    other = admin.start_sandbox()
    admin.ok("/write_file", sandbox_id=frozen, path="/root/before.txt", content="before")
    pids = sandbox_pids(admin, frozen)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        _check_stopped_sandbox(admin, frozen, other, pids)
    finally:  # whatever failed, nothing of ours stays stopped for the engine to trip over
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _check_stopped_sandbox(admin, frozen: str, other: str, pids: list[int]) -> None:
    def timed(fn):
        t0 = time.monotonic()
        r = fn()
        return r, time.monotonic() - t0

    # Calls with a timeout of their own, and calls without one (or with a long one: execute's
    # default is 1200 s), all end within about two reply deadlines with a clear 504.
    calls = [("/run_in_session", {"command": "echo hi", "session": "default", "timeout": 2}),
             ("/execute", {"command": "true", "shell": True}),
             ("/run_in_session", {"command": "echo hi", "session": "default"}),
             ("/read_file", {"path": "/root/before.txt"}),
             ("/create_session", {"session": "late"})]
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda c: timed(lambda: admin.post(c[0], {"sandbox_id": frozen, **c[1]}, 60)), calls))
    for (route, _), (r, took) in zip(calls, answers):
        assert r.status_code == 504 and "did not answer" in r.text and "Traceback" not in r.text, (route, r.text)
        assert took < 2 * REPLY_TIMEOUT + 5, (route, took)
    # Meanwhile the admin serves everything else.
    assert admin.healthy()
    assert admin.run(other, "echo fine").json()["result"]["output"].strip() == "fine"

    # A stopped sandbox can still be stopped and deleted, promptly.
    r, took = timed(lambda: admin.post("/stop", {"sandbox_id": frozen}, http_timeout=60))
    assert r.status_code == 200, r.text
    r, took2 = timed(lambda: admin.post("/delete", {"sandbox_id": frozen}, http_timeout=60))
    assert r.status_code == 200, r.text
    assert took + took2 < 30, (took, took2)
    gone = admin.http.get("/get_status", params={"sandbox_id": frozen, "include_all_states": True}).json()["result"]
    assert gone["lifecycle_state"] == "deleted", gone
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read(), pid
