"""A command that floods its output, through run_in_session and through a stream whose client
reads nothing while it runs: the call ends at its timeout, the output is cut to the limit, and
the admin's memory stays bounded."""

from __future__ import annotations

import time

import pytest

from rock.admin.context import PREFIX
from tests.faults.conftest import StalledClient, backends, memory_mb

FLOOD_S = 3
MAX_OUTPUT = 1 << 20
GROWTH_MB = 60  # what the admin may grow by (peak) while 20-40 MB/s of output pass it


@pytest.mark.parametrize("backend", backends())
def test_output_flood(admin_process, backend):
    admin = admin_process(backend).start()
    sid = admin.start_sandbox()
    admin.run(sid, "true")
    _, peak_before = memory_mb(admin.proc.pid)

    t0 = time.monotonic()
    r = admin.post("/run_in_session", {"sandbox_id": sid, "command": "yes flood", "session": "default",
                                       "timeout": FLOOD_S, "max_output": MAX_OUTPUT}, http_timeout=FLOOD_S + 30)
    took = time.monotonic() - t0
    obs = r.json()["result"]
    assert r.status_code == 200 and obs["status"] == "timeout" and obs["truncated"], r.text[:500]
    assert "timed out" in obs["failure_reason"]
    assert MAX_OUTPUT // 2 <= len(obs["output"]) <= MAX_OUTPUT + 4096
    assert took < FLOOD_S + 10, took

    # A stream client that reads nothing while the flood lasts: the admin must not keep it all.
    stalled = StalledClient(admin.port, f"{PREFIX}/stream?sandbox_id={sid}&session=flood&create=true")
    stalled.send_json({"type": "run", "command": "yes flood", "timeout": FLOOD_S, "max_output": MAX_OUTPUT})
    time.sleep(FLOOD_S + 1)
    stalled.drop()

    _, peak_after = memory_mb(admin.proc.pid)
    assert peak_after - peak_before < GROWTH_MB, (peak_before, peak_after)
    # The admin and the sandbox serve on.
    assert admin.healthy()
    assert admin.run(sid, "echo calm").json()["result"]["output"].strip() == "calm"
