"""SIGKILL of a sandbox's agent while a command runs in it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.faults.conftest import agent_pid, backends


@pytest.mark.parametrize("backend", backends())
def test_agent_killed_mid_command(admin_process, backend):
    admin = admin_process(backend).start()
    victim = admin.start_sandbox()
    bystander = admin.start_sandbox()
    admin.ok("/write_file", sandbox_id=bystander, path="/tmp/kept.txt", content="kept")
    answer: dict = {}

    def call():
        t0 = time.monotonic()
        answer["response"] = admin.run(victim, "sleep 60", timeout=90, http_timeout=100)
        answer["seconds"] = time.monotonic() - t0

    pid = agent_pid(admin, victim)
    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)  # the command is running
    os.kill(pid, signal.SIGKILL)
    caller.join(30)
    assert not caller.is_alive(), "the command call hangs after its agent died"
    r = answer["response"]
    assert answer["seconds"] < 20
    body = r.json()
    # A clear error naming what happened, not a traceback and not a success.
    assert r.status_code >= 400 or body["status"] != "Success", r.text
    text = r.text.lower()
    assert "agent" in text and "traceback" not in text, r.text

    # The sandbox is reported as not running (dead), and a further call says so at once.
    deadline = time.monotonic() + 15
    while admin.status(victim)["is_alive"] and time.monotonic() < deadline:
        time.sleep(0.2)
    status = admin.status(victim)
    assert not status["is_alive"] and status["lifecycle_state"] == "failed", status
    assert "agent went away" in status["failure_reason"], status
    again = admin.run(victim, "echo hi")
    assert again.status_code >= 400 and "agent went away" in again.text, again.text

    # The admin serves on: the other sandbox still works, its file is there, new starts work.
    assert admin.healthy()
    assert admin.ok("/read_file", sandbox_id=bystander, path="/tmp/kept.txt")["content"] == "kept"
    fresh = admin.start_sandbox()
    out = admin.run(fresh, "echo alive").json()
    assert out["result"]["output"].strip() == "alive", out
    # and the dead sandbox can still be deleted
    admin.ok("/delete", sandbox_id=victim)
