"""The seed documents' sandbox samples run unchanged against our admin, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seeds import missing, python_blocks

RUNNER = Path(__file__).with_name("snippet.py")


def sandbox_samples() -> list:
    sdk_ref = python_blocks("000")  # section 2: basic operations, group, configuration
    readme = [b for b in python_blocks("001") if "rock.sdk.sandbox" in b]  # "Sandbox SDK Usage"
    if len(sdk_ref) < 3 or not readme:
        return [pytest.param(None, None, id="seeds-missing")]
    return [pytest.param(sdk_ref[0], "Hello ROCK", id="000-basic"),
            pytest.param(sdk_ref[1], None, id="000-group"),
            pytest.param(sdk_ref[2], None, id="000-config"),
            pytest.param(readme[0], None, id="001-readme")]


@pytest.mark.parametrize("code,expect", sandbox_samples())
def test_seed_sample_runs_unchanged(admin, tmp_path, code, expect):
    if code is None:
        pytest.fail(missing("the seed sandbox samples"))
    script = tmp_path / "sample.py"
    script.write_text(code)
    env = {**os.environ, "ROCK_BASE_URL": admin.url}
    before = {i.sandbox_id for i in admin.ctx.worker.list()}
    proc = subprocess.run([sys.executable, str(RUNNER), str(script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if expect:
        assert expect in proc.stdout
    # The samples stop what they start.
    assert {i.sandbox_id for i in admin.ctx.worker.list()} <= before
