import subprocess
import sys
from pathlib import Path

import pytest

from tests.admin.harness import Admin


@pytest.fixture(scope="session")
def training_admin():
    """One real admin (docker) for the training tests."""
    server = Admin("docker").start()
    yield server
    server.stop(stop_sandboxes=True)


AGENTSCOPE_VENV = Path.home() / ".cache" / "rock" / "agentscope-venv"


@pytest.fixture(scope="session")
def agentscope_python() -> Path:
    """agentscope-runtime from PyPI in its own venv (its training-box client is the arbiter)."""
    python = AGENTSCOPE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import agentscope_runtime.sandbox.client.training_client"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(AGENTSCOPE_VENV)], check=True)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "agentscope-runtime==1.1.5"],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.fail(f"installing agentscope-runtime from PyPI failed:\n{proc.stderr[-2000:]}")
    return python
