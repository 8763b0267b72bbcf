"""The unmodified JavaScript SDKs from npm (``e2b`` 2.51, ``@e2b/code-interpreter`` 2.8) against a
real admin, on docker and bwrap: directory watching from kernel events, the list filters and a
quiet cell under ``runCode``'s timeouts (scenario_js.cjs); templates, volumes and secrets, each
missing to another tenant (scenario_js_objects.cjs). Each scenario is run by node and prints its OK line."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from bench.venvs import E2B_JS_DIR, E2B_JS_PACKAGES, VenvError, client_node_modules

HERE = Path(__file__).parent


def run_node(admin, script: str, done: str, tmp_path: Path, **extra: str) -> None:
    """``script`` run by node with the SDKs on its path, configured by E2B's variables alone."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (scripts/setup-host.sh installs them)")
    try:
        modules = client_node_modules(E2B_JS_DIR, E2B_JS_PACKAGES)
    except VenvError as exc:
        pytest.fail(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_KEY="e2b-token-a", E2B_API_URL=admin.url, E2B_SANDBOX_URL=admin.url,
               NODE_PATH=str(modules), **extra)
    proc = subprocess.run(["node", str(HERE / script)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and done in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_real_e2b_js_sdk(e2b_admin, tmp_path):
    run_node(e2b_admin, "scenario_js.cjs", "E2B JS OK", tmp_path)
    live = [r for r in e2b_admin.ctx.sandboxes.records.values() if r.state in ("pending", "running")]
    assert live == [], [r.sandbox_id for r in live]


def test_real_e2b_js_templates_volumes_secrets(e2b_admin, tmp_path):
    name = f"js-{uuid.uuid4().hex[:8]}"
    run_node(e2b_admin, "scenario_js_objects.cjs", "E2B JS OBJECTS OK", tmp_path, E2B_VOLUME_API_URL=e2b_admin.url,
             OTHER_KEY="e2b-token-b", BASE_IMAGE=e2b_admin.settings.default_image, NAME=name)
    # nothing of the scenario's is left, for either tenant
    sandboxes = e2b_admin.ctx.sandboxes
    assert [r.sandbox_id for r in sandboxes.records.values() if r.state in ("pending", "running")] == []
    assert sandboxes.volumes.list("team-a") == [] and sandboxes.volumes.list("team-b") == []
