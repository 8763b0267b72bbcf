"""`rock sandbox ...` against a real admin, with --json and through a pipe."""

from __future__ import annotations

import json
import subprocess
import sys


def rock(admin, *args: str, stdin: str | None = None, check=True) -> subprocess.CompletedProcess:
    head = [a for a in args[:1] if a]  # "--json" or nothing
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", *head, "sandbox", "--url", admin.url, *args[1:]],
                          input=stdin, capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_create_exec_logs_shell_stop(admin):
    created = json.loads(rock(admin, "--json", "create", "--memory", "512m").stdout)
    sid = created["sandbox_id"]
    try:
        assert created["is_alive"]
        listed = json.loads(rock(admin, "--json", "list").stdout)
        assert sid in [i["sandbox_id"] for i in listed]

        out = rock(admin, "", "exec", sid, "--", "echo", "hello from cli")
        assert out.stdout.strip() == "hello from cli"
        failed = rock(admin, "", "exec", sid, "--", "sh -c 'exit 9'", check=False)
        assert failed.returncode == 9

        bg = json.loads(rock(admin, "--json", "exec", "--background", sid, "--", "echo bg-out").stdout)
        logs = rock(admin, "", "logs", sid, "--proc", bg["proc_id"], "-f")
        assert logs.stdout.strip() == "bg-out"
        history = rock(admin, "", "logs", sid).stdout
        assert "started" in history

        shell = rock(admin, "", "shell", sid, stdin="cd /tmp\nexport Y=7\necho $Y $(pwd)\n")
        assert "7 /tmp" in shell.stdout
    finally:
        rock(admin, "", "stop", sid)
    states = {i["sandbox_id"]: i["lifecycle_state"] for i in json.loads(rock(admin, "--json", "list").stdout)}
    assert states[sid] == "stopped"
