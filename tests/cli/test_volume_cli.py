"""`rock volume create|list|delete` and `rock sandbox create --volume` against a real admin."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.test_sandbox_cli import rock


def volumes(admin, *args: str, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "volume", "--url", admin.url, *args],
                          capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_volume_create_mount_list_delete(admin):
    made = json.loads(volumes(admin, "create", "cli-vol", "--size", "2M").stdout)
    assert made["name"] == "cli-vol" and made["size_bytes"] == 2 << 20
    sids = []
    try:
        sid = json.loads(rock(admin, "--json", "create", "--memory", "512m", "--volume", "cli-vol:/vol").stdout)["sandbox_id"]
        sids.append(sid)
        rock(admin, "", "exec", sid, "--", "echo kept > /vol/f")
        busy = volumes(admin, "delete", "cli-vol", check=False)
        assert busy.returncode == 1 and "stop them first" in busy.stderr
        rock(admin, "", "delete", sid)
        ro = json.loads(rock(admin, "--json", "create", "--memory", "512m", "--volume", "cli-vol:/vol:ro").stdout)
        sids.append(ro["sandbox_id"])
        assert rock(admin, "", "exec", ro["sandbox_id"], "--", "cat /vol/f").stdout.strip() == "kept"
        bad = rock(admin, "", "create", "--volume", "cli-vol", check=False)
        assert bad.returncode == 1 and "NAME:PATH" in bad.stderr
        assert [v["name"] for v in json.loads(volumes(admin, "list").stdout)] == ["cli-vol"]
    finally:
        rock(admin, "", "delete", *sids)
    volumes(admin, "delete", "cli-vol")
    assert json.loads(volumes(admin, "list").stdout) == []
    gone = volumes(admin, "delete", "cli-vol", check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr
