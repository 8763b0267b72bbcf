"""A start answers before its "running" record is on disk: a crash in that window must not
lose the sandbox, and the records must end up agreeing with what runs."""

from __future__ import annotations

import sqlite3

import pytest

from rock.sdk.sandbox import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox
from tests.admin.harness import Admin


@pytest.mark.bwrap
def test_a_crash_before_running_was_written_leaves_a_usable_sandbox_marked_running():
    first = Admin("bwrap").start()
    try:
        box = SyncSandbox(SandboxConfig(base_url=first.url, memory="256m", cpus=0.5))
        box.start()
        box.write_bytes("/root/kept.txt", b"still here")
        sid = box.sandbox_id
        box.aclose()
    finally:
        first.stop()
    # What the disk holds when the admin died between its answer and the "running" write.
    db = sqlite3.connect(first.state_dir / "admin.db")
    with db:
        db.execute("UPDATE sandboxes SET state='pending' WHERE sandbox_id=?", (sid,))
        db.execute("DELETE FROM history WHERE sandbox_id=? AND event='started'", (sid,))
    db.close()

    second = Admin("bwrap", state_dir=first.state_dir).start()
    try:
        again = SyncSandbox(SandboxConfig(base_url=second.url))
        again.attach(sid)
        status = again.get_status()
        assert status.is_alive
        assert [h.event for h in status.state_history] == ["create", "reattached"]
        assert again.read_bytes("/root/kept.txt") == b"still here"
        again.stop()
    finally:
        second.stop(stop_sandboxes=True)


@pytest.mark.bwrap
def test_a_start_records_who_asked_from_its_headers():
    """ROCK's X-User-Id, X-Experiment-Id and X-Namespace on a start (answered at the admin's ASGI
    door) are kept with the record: its status shows them and the listing filters by them."""
    import httpx

    from rock.admin.context import PREFIX

    admin = Admin("bwrap", simulated_cluster={"nodes": 1}).start()
    try:
        url = admin.url + PREFIX
        h = {"X-User-Id": "alice", "X-Experiment-Id": "exp-7", "X-Namespace": "team-a"}
        sid = httpx.post(url + "/start", json={"image": "python:3.11"}, headers=h, timeout=60).json()["result"]["sandbox_id"]
        httpx.post(url + "/start", json={"image": "python:3.11"}, timeout=60).raise_for_status()  # nobody's
        status = httpx.get(url + "/get_status", params={"sandbox_id": sid}, timeout=60).json()["result"]
        assert (status["user_id"], status["experiment_id"], status["namespace"]) == ("alice", "exp-7", "team-a")
        listed = httpx.get(url + "/sandboxes", params={"user_id": "alice"}, timeout=60).json()["result"]
        assert [i["sandbox_id"] for i in listed["items"]] == [sid]
    finally:
        admin.stop()
