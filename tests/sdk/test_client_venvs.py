"""bench.venvs.client_python: every way of failing to make a client SDK's venv is a VenvError
that says what failed, which the benchmark and the tests turn into a record or a skip that says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.venvs import VenvError, client_python


def test_a_venv_that_cannot_be_made_says_venv_failed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(VenvError, match="python -m venv said"):
        client_python(blocker / "venv", ["anything"], "import anything")


def test_a_package_pip_cannot_install_says_pip_failed(tmp_path):
    # A local path that does not exist: pip fails at once, without the network.
    missing = tmp_path / "no-such-package-1.0-py3-none-any.whl"
    with pytest.raises(VenvError, match="pip said") as err:
        client_python(tmp_path / "venv", [str(missing)], "import no_such_package")
    assert str(missing) in str(err.value) or "does not exist" in str(err.value)


def test_a_venv_that_already_imports_its_packages_is_kept(tmp_path):
    # A venv made by an earlier run, which imports what is asked: used as it is, not made again.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    marker = venv / "kept"
    marker.write_text("")
    assert client_python(venv, ["json-is-stdlib"], "import json") == venv / "bin" / "python"
    assert marker.exists()  # made again (--clear) would have removed it
