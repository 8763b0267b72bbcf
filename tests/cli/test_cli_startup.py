"""Every ``rock`` command but the one that serves starts without importing the admin's app:
importing FastAPI, the routes and their pydantic models is ~1.6 s of a ~1.9 s start on a 2-core VM,
paid by each ``rock sandbox exec`` or ``rock admin status`` before this was split out."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("rock.admin.app", "fastapi", "uvicorn")


def test_cli_commands_do_not_import_the_server(tmp_path):
    code = (
        "import sys\n"
        "from rock.cli import main\n"
        f"main.main(['--json', 'admin', 'status', '--state-dir', {str(tmp_path)!r}])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.strip().splitlines()[-1]
    assert loaded == "[]", f"`rock admin status` imported {loaded}"
