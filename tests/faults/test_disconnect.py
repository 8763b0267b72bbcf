"""A client that vanishes in the middle of a stream: the admin interrupts its command, frees the
connection, and the next request (on the same session too) works."""

from __future__ import annotations

import os
import time

import pytest

from rock.admin.context import PREFIX
from tests.faults.conftest import StalledClient, backends


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("backend", backends())
def test_client_vanishes_mid_stream(admin_process, backend):
    admin = admin_process(backend).start()
    sid = admin.start_sandbox()
    admin.ok("/create_session", sandbox_id=sid, session="dc")
    admin.run(sid, "true")
    fds_before = _fds(admin.proc.pid)

    for _ in range(3):  # a leak per disconnect would add up
        client = StalledClient(admin.port, f"{PREFIX}/stream?sandbox_id={sid}&session=dc")
        client.send_json({"type": "run", "command": "echo started > /root/marker; sleep 300"})
        deadline = time.monotonic() + 20
        while admin.run(sid, "cat /root/marker 2>/dev/null").json()["result"]["output"].strip() != "started":
            assert time.monotonic() < deadline, "the streamed command never started"
            time.sleep(0.1)
        client.drop()

        # The command is interrupted: the session is idle again and no sleep is left running.
        deadline = time.monotonic() + 15
        while True:
            sessions = admin.http.get("/sessions", params={"sandbox_id": sid}).json()["result"]["sessions"]
            if not next(s for s in sessions if s["session"] == "dc")["running"]:
                break
            assert time.monotonic() < deadline, f"the vanished client's command still runs: {sessions}"
            time.sleep(0.1)
        admin.run(sid, "rm /root/marker")
        procs = admin.ok("/execute", sandbox_id=sid, command="ps -eo args", shell=True)["stdout"]
        assert "sleep 300" not in procs, procs
        # The same session takes the next command.
        r = admin.post("/run_in_session", {"sandbox_id": sid, "session": "dc", "command": "echo next"})
        assert r.json()["result"]["output"].strip() == "next", r.text

    # The admin let go of the connections (a few descriptors of slack for its own housekeeping).
    deadline = time.monotonic() + 10
    while _fds(admin.proc.pid) > fds_before + 2:
        assert time.monotonic() < deadline, (fds_before, sorted(os.listdir(f"/proc/{admin.proc.pid}/fd")))
        time.sleep(0.2)
    assert admin.healthy()
