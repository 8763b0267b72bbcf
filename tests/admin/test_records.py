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
