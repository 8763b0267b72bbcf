"""The suites' data packages on the host, outside the interpreter's prefix.

Sandboxes see the host's Python prefix, so a package installed there is in every sandbox: with
HumanEval's tests that would hand the answers to the agent. The admin (task lists, hidden tests)
and the caller's oracle read them from this folder instead, which no sandbox mounts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from rock.training.suites import BFCL_PACKAGES, HUMANEVAL_PACKAGE

PACKAGES = [*BFCL_PACKAGES, HUMANEVAL_PACKAGE]  # installed without their dependencies (what grading needs)


def default_dir() -> Path:
    # One per host, not per admin state dir: the packages are the same for every admin.
    return Path(os.environ.get("ROCK_TRAINING_SITE") or Path.home() / ".cache" / "rock" / "training")


def ensure_site(root: Path | None = None, python: str | None = None, progress=None) -> Path:
    """The folder holding the packages (installed once; a marker file says it is complete)."""
    root = Path(root or default_dir())
    key = hashlib.sha256(json.dumps(["--no-deps", *PACKAGES]).encode()).hexdigest()[:12]  # the install, options too
    site = root / f"site-{key}"
    if (site / ".complete").exists():
        return site
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"site-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (site / ".complete").exists():
            site.mkdir(exist_ok=True)
            _pip(python or os.path.realpath(sys.executable), site, progress or (lambda s: None))
            (site / ".complete").write_text("ok\n")
    return site


def _pip(python: str, site: Path, say) -> None:
    """The host's pip, for this fixed, pinned list only (ours, like the admin's own dependencies):
    the admin imports these packages itself to grade. Nothing a caller names is installed here;
    env images install callers' packages in build sandboxes (rock.envs.build_sandbox)."""
    cmd = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
           "--no-warn-script-location", "--no-deps", "--target", str(site), "--", *PACKAGES]
    if os.environ.get("ROCK_PIP_INDEX_URL"):  # ROCK's variable: the package index packages come from
        cmd[4:4] = ["--index-url", os.environ["ROCK_PIP_INDEX_URL"]]
    say("pip install --no-deps " + " ".join(PACKAGES))
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"installing the training suites' packages failed (pip exit {proc.returncode}):\n"
                           + proc.stdout[-2000:] + proc.stderr[-2000:])


def import_from(site: Path) -> None:
    """Make the packages importable in this process (the oracle, the in-process baseline)."""
    if str(site) not in sys.path:
        sys.path.append(str(site))


if __name__ == "__main__":  # python -m rock.training.hostsite: install now (setup-host.sh)
    print(ensure_site(progress=print))
