"""Suite builds run third-party tests in sandboxes, never on the host, and give the same tasks as
the host-run builds did (same seed, same ids, same fail-to-pass and pass-to-pass lists)."""

import json
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from rock.agentic.tasks.pypi_bugs import Builder, Library, cache_dir

pytestmark = pytest.mark.docker  # test sandboxes are the docker engine's (as env image builds are)

EXPECTED = Path(__file__).with_name("data") / "pypi_bugs_seed0_2.json"


def _summary(suite: Path) -> dict:
    import tomllib

    out = {}
    for t in sorted(p for p in suite.iterdir() if p.is_dir()):
        conf = json.loads((t / "tests" / "config.json").read_text())
        meta = tomllib.loads((t / "task.toml").read_text())["metadata"]
        out[t.name] = {"mutant": f"{meta['module']}:{meta['function']}:{meta['mutation']}:{meta['line']}",
                       "FAIL_TO_PASS": conf["FAIL_TO_PASS"], "PASS_TO_PASS": conf["PASS_TO_PASS"],
                       "test_files": conf["test_files"]}
    return out


def test_a_suite_built_in_sandboxes_gives_the_tasks_the_host_build_gave(tmp_path):
    """From an empty cache (the sdists aside, when this machine has them: they are only bytes),
    every baseline and mutant run in test sandboxes; the tasks are those a build that ran the
    tests on the host wrote (recorded in data/pypi_bugs_seed0_2.json)."""
    cache = tmp_path / "cache"
    if (cache_dir() / "sdists").is_dir():
        shutil.copytree(cache_dir() / "sdists", cache / "sdists")
    lines = []
    suite = Builder(seed=0, per_library=2, cache=cache, say=lines.append).build()
    assert _summary(suite) == json.loads(EXPECTED.read_text())
    assert any("baseline run" in line and "in a sandbox" in line for line in lines), lines
    assert any(line.startswith("test sandbox rock-build-") for line in lines), lines  # they ran, in sandboxes


FAKE_INIT = "def add(a, b):\n    return a + b\n\n\ndef bigger(x):\n    return x > 10\n"
FAKE_TEST = """import os


def test_add():
    assert add(2, 3) == 5


def test_bigger():
    assert bigger(11) and not bigger(3)


def test_writes_where_it_runs():
    # where the tests run, this file appears: it must never be the host's /tmp
    with open({marker!r}, "a") as f:
        f.write("ran\\n")
    assert os.path.exists({marker!r})


from fakelib import add, bigger  # noqa: E402
"""


def test_no_third_party_test_runs_on_the_host(tmp_path):
    """A library whose tests write a file in /tmp: the suite's baseline and mutant runs happen
    (the control: the test that writes passed, and a task was kept), the file never appears in
    the host's /tmp."""
    marker = f"/tmp/rock-third-party-ran-here-{uuid.uuid4().hex}"
    src = tmp_path / "fakelib-1.0"
    (src / "fakelib").mkdir(parents=True)
    (src / "tests").mkdir()
    (src / "fakelib" / "__init__.py").write_text(FAKE_INIT)
    (src / "tests" / "test_fake.py").write_text(FAKE_TEST.format(marker=marker))
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: fakelib\nVersion: 1.0\n")
    cache = tmp_path / "cache"
    (cache / "sdists").mkdir(parents=True)
    with tarfile.open(cache / "sdists" / "fakelib-1.0.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="fakelib-1.0")
    lib = Library("fakelib", "1.0", "fakelib", ("tests",))
    suite = Builder(seed=0, per_library=1, cache=cache, libraries=[lib], say=lambda line: None).build()
    baseline = json.loads((cache / "work" / "fakelib-1.0" / "baseline-v2.json").read_text())
    assert baseline["tests/test_fake.py::test_writes_where_it_runs"]["outcome"] == "passed", baseline
    tasks = _summary(suite)
    assert len(tasks) == 1 and "tests/test_fake.py::test_writes_where_it_runs" in tasks["fakelib-0000"]["PASS_TO_PASS"]
    assert not Path(marker).exists(), "a library's tests ran on the host"
