"""The unmodified JavaScript SDKs from npm (``e2b`` 2.51, ``@e2b/code-interpreter`` 2.8) against a
real admin, on docker and bwrap: directory watching from kernel events, the list filters and a
quiet cell under ``runCode``'s timeouts (scenario_js.cjs, run by node, prints its OK line)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.venvs import E2B_JS_DIR, E2B_JS_PACKAGES, VenvError, client_node_modules

HERE = Path(__file__).parent


def test_real_e2b_js_sdk(e2b_admin, tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (scripts/setup-host.sh installs them)")
    try:
        modules = client_node_modules(E2B_JS_DIR, E2B_JS_PACKAGES)
    except VenvError as exc:
        pytest.fail(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_KEY="e2b-token-a", E2B_API_URL=e2b_admin.url, E2B_SANDBOX_URL=e2b_admin.url,
               NODE_PATH=str(modules))
    proc = subprocess.run(["node", str(HERE / "scenario_js.cjs")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "E2B JS OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    live = [r for r in e2b_admin.ctx.sandboxes.records.values() if r.state in ("pending", "running")]
    assert live == [], [r.sandbox_id for r in live]
