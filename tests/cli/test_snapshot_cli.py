"""`rock sandbox pause|resume|snapshot|fork|restore` and `rock snapshot list|delete` against a real admin."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.cli.test_sandbox_cli import rock


def snapshots(admin, *args: str, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "snapshot", "--url", admin.url, *args],
                          capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def state(admin, sid: str) -> str:
    items = json.loads(rock(admin, "--json", "list").stdout)
    return {i["sandbox_id"]: i["lifecycle_state"] for i in items}[sid]


def test_pause_resume_snapshot_fork_list_delete_round_trip(admin):
    sid = json.loads(rock(admin, "--json", "create", "--memory", "512m").stdout)["sandbox_id"]
    made = [sid]
    try:
        rock(admin, "", "exec", sid, "--", "echo v1 > /root/v")
        assert rock(admin, "", "pause", sid).stdout.strip() == f"paused {sid}"
        assert state(admin, sid) == "paused"
        refused = rock(admin, "", "exec", sid, "--", "true", check=False)
        assert refused.returncode == 1 and "is paused: resume it first" in refused.stderr
        rock(admin, "", "resume", sid)
        assert state(admin, sid) == "running"

        name = rock(admin, "", "snapshot", sid, "--name", "cli-snap").stdout.strip()
        assert name == "cli-snap"
        rock(admin, "", "exec", sid, "--", "echo v2 > /root/v")
        assert rock(admin, "", "restore", sid, name).stdout.strip() == f"restored {sid} to {name}"
        assert rock(admin, "", "exec", sid, "--", "cat /root/v").stdout.strip() == "v1"  # rolled back, same id
        listed = json.loads(snapshots(admin, "list").stdout)
        assert [s["mode"] for s in listed if s["name"] == name] == ["filesystem"]

        children = rock(admin, "", "fork", sid, "-n", "2").stdout.split()
        made += children
        assert len(children) == 2
        for child in children:
            assert rock(admin, "", "exec", child, "--", "cat /root/v").stdout.strip() == "v1"

        started = json.loads(rock(admin, "--json", "create", "--snapshot", name).stdout)["sandbox_id"]
        made.append(started)
        assert rock(admin, "", "exec", started, "--", "cat /root/v").stdout.strip() == "v1"

        bad = rock(admin, "", "fork", sid, "-n", "0", check=False)
        assert bad.returncode == 1 and "count" in bad.stderr
        full = rock(admin, "", "snapshot", sid, "--mode", "full", check=False)
        assert full.returncode == 1 and "gvisor" in full.stderr
    finally:
        rock(admin, "", "delete", *made)
    snapshots(admin, "delete", "cli-snap")
    # the fork's own snapshot: deleted once its children ran, or (docker: their image) after the last of them
    deadline = time.monotonic() + 60
    while [s for s in json.loads(snapshots(admin, "list").stdout) if s["source"].startswith(sid[:8])]:
        assert time.monotonic() < deadline, "the fork's snapshot outlived its children"
        time.sleep(0.2)
    assert "cli-snap" not in snapshots(admin, "list").stdout
    gone = snapshots(admin, "delete", "cli-snap", check=False)
    assert gone.returncode == 1 and "no snapshot named" in gone.stderr
