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


# Each process asks for the venv as the suite's test processes do, with the make slowed down and
# logged: the second must wait for the first's venv and use it, not make (--clear) it again.
ASK = r"""
import sys, time
from pathlib import Path
import bench.venvs as venvs

made = venvs._make_venv

def slow(venv, packages, interpreter):
    with open(sys.argv[2], "a") as log:
        log.write("made\n")
    time.sleep(1)
    made(venv, packages, interpreter)

venvs._make_venv = slow
print(venvs.client_python(Path(sys.argv[1]), [sys.argv[3]], "import rock_tiny"))
"""


def _tiny_wheel(folder) -> str:
    """A wheel of one module, for pip to install without the network."""
    import zipfile

    path = folder / "rock_tiny-1.0-py3-none-any.whl"
    files = {"rock_tiny.py": "X = 1\n",
             "rock_tiny-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: rock-tiny\nVersion: 1.0\n",
             "rock_tiny-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in files) + "rock_tiny-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in {**files, "rock_tiny-1.0.dist-info/RECORD": record}.items():
            z.writestr(name, text)
    return str(path)


def test_two_processes_asking_for_one_venv_make_it_once(tmp_path):
    wheel, venv, log = _tiny_wheel(tmp_path), tmp_path / "venvs" / "tiny", tmp_path / "made.log"
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    procs = [subprocess.Popen([sys.executable, "-c", ASK, str(venv), str(log), wheel], cwd=root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {out.strip() for out, _ in outs} == {str(venv / "bin" / "python")}
    assert log.read_text() == "made\n"  # once: the other process found it made
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import rock_tiny"]).returncode == 0
