"""A real admin per backend and a sample of each built-in suite, built into a temporary folder.

The sample is the first tasks of the real suites (the same seed): the sdists and the mutants
already tried come from the host's cache ($ROCK_AGENTIC_CACHE or ~/.cache/rock/agentic). Set-up
does not fill it: on a host's first run this fixture downloads the sdists and tries mutants until
it has the sample (under a minute here), later runs only write it."""

import os
from pathlib import Path

import pytest

from rock.agentic.tasks import humaneval_repo
from rock.agentic.tasks.pypi_bugs import Builder
from tests.admin.harness import admin  # noqa: F401

PER_LIBRARY = 2


@pytest.fixture(scope="session")
def suites(tmp_path_factory):
    root = tmp_path_factory.mktemp("agentic-suites")
    Builder(seed=0, per_library=PER_LIBRARY, jobs=2, out=root / "suites" / "pypi-bugs").build()
    humaneval_repo.build(out=root / "suites" / "humaneval-repo")
    before = os.environ.get("ROCK_AGENTIC_CACHE")
    os.environ["ROCK_AGENTIC_CACHE"] = str(root)  # open_suite (and the CLI) find the sample there
    yield root
    if before is None:
        os.environ.pop("ROCK_AGENTIC_CACHE", None)
    else:
        os.environ["ROCK_AGENTIC_CACHE"] = before


HARBOR_TEST_SH = ("#!/bin/bash\nmkdir -p /logs/verifier\ncd /workspace\n"
                  "if python3 -c 'import calc; assert calc.add(2, 3) == 5 and calc.add(-1, 1) == 0'; "
                  "then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n")


def harbor_task(root: Path, name: str = "fix-add", test_sh: str = HARBOR_TEST_SH) -> Path:
    """A user's own task in Harbor's layout: a one-line bug, a test.sh writing the reward."""
    t = root / name
    (t / "environment" / "workspace").mkdir(parents=True)
    (t / "environment" / "workspace" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (t / "tests").mkdir()
    (t / "tests" / "test.sh").write_text(test_sh)
    (t / "solution").mkdir()
    (t / "solution" / "solve.sh").write_text("#!/bin/bash\nsed -i 's/a - b/a + b/' /workspace/calc.py\n")
    (t / "instruction.md").write_text("calc.add subtracts; make it add.\n")
    (t / "task.toml").write_text('version = "1.0"\n[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 30.0\n'
                                 '[environment]\ndocker_image = "python:3.11"\n')
    return t
