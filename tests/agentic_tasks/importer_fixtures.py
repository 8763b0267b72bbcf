"""Fixtures the importer tests build themselves (nothing downloaded): a git repository whose
history holds a real fix, a SWE-bench-shaped row made from that history, and a terminal-bench
task of our own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.venvs import VenvError, harbor_e2b_python

BUGGY = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
OLD_TESTS = ("import unittest\n\nfrom calc import sub\n\n\nclass SubTest(unittest.TestCase):\n"
             "    def test_sub(self):\n        self.assertEqual(sub(5, 3), 2)\n")
NEW_TESTS = ("import unittest\n\nfrom calc import add\n\n\nclass AddTest(unittest.TestCase):\n"
             "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n")


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def calc_repo(root: Path) -> Path:
    """A clone at ``root/acme__calc``: a bug in ``calc.add`` (commit 1), then its fix with a test that fails
    before it (commit 2). The clone's work tree is left at the fix, as a user's clone would be."""
    repo = root / "acme__calc"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "calc" / "__init__.py").write_text(BUGGY)
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_sub.py").write_text(OLD_TESTS)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "calc with add and sub")
    (repo / "calc" / "__init__.py").write_text(FIXED)
    (repo / "tests" / "test_add.py").write_text(NEW_TESTS)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fix add, with its test")
    return repo


def calc_row(repo: Path, instance_id: str = "acme__calc-1", encoded: bool = True) -> dict:
    """The SWE-bench row of the fix in ``calc_repo``: patch and test_patch split from the fix commit."""
    base = git(repo, "rev-parse", "HEAD~1").strip()
    f2p, p2p = ["tests.test_add.AddTest.test_add"], ["tests.test_sub.SubTest.test_sub"]
    return {"instance_id": instance_id, "repo": "acme/calc", "base_commit": base,
            "patch": git(repo, "diff", base, "HEAD", "--", "calc"),
            "test_patch": git(repo, "diff", base, "HEAD", "--", "tests"),
            "problem_statement": "calc.add(2, 3) returns -1; it should add its arguments.\n",
            "FAIL_TO_PASS": json.dumps(f2p) if encoded else f2p,
            "PASS_TO_PASS": json.dumps(p2p) if encoded else p2p, "version": "0.1"}


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TB_TASK_YAML = """instruction: |-
  Write the word "hello" followed by a newline into /app/greeting.txt.
author_name: ROCK
difficulty: easy
category: file-operations
tags: [files]
max_agent_timeout_sec: 120
max_test_timeout_sec: 60
"""
TB_COMPOSE = """services:
  client:
    build:
      dockerfile: Dockerfile
    image: ${T_BENCH_TASK_DOCKER_CLIENT_IMAGE_NAME}
    container_name: ${T_BENCH_TASK_DOCKER_CLIENT_CONTAINER_NAME}
    command: [ "sh", "-c", "sleep infinity" ]
    environment:
      - TEST_DIR=${T_BENCH_TEST_DIR}
      - GREETING_FILE=/app/greeting.txt
    volumes:
      - ${T_BENCH_TASK_LOGS_PATH}:${T_BENCH_CONTAINER_LOGS_PATH}
      - ${T_BENCH_TASK_AGENT_LOGS_PATH}:${T_BENCH_CONTAINER_AGENT_LOGS_PATH}
"""


def terminal_bench_task(root: Path, name: str = "hello-file") -> Path:
    """A terminal-bench task of our own, in terminal-bench's layout; its checks need only the image's Python."""
    t = root / name
    (t / "tests").mkdir(parents=True)
    (t / "task.yaml").write_text(TB_TASK_YAML)
    (t / "docker-compose.yaml").write_text(TB_COMPOSE)
    (t / "Dockerfile").write_text("FROM python:3.11\nWORKDIR /app\nRUN echo 'draft' > /app/notes.txt\n")
    (t / "run-tests.sh").write_text("#!/bin/bash\npython3 $TEST_DIR/test_outputs.py\n")
    (t / "tests" / "test_outputs.py").write_text(
        "import os\nimport pathlib\n\n"
        "assert os.environ.get('TEST_DIR', '/tests') == '/tests'\n"
        "text = pathlib.Path('/app/greeting.txt').read_text()\n"
        "assert text == 'hello\\n', repr(text)\nprint('greeting ok')\n")
    (t / "solution.sh").write_text("#!/bin/bash\necho hello > \"$GREETING_FILE\"\n")
    return t


def imported_tasks(root: Path) -> Path:
    """``root/tasks``: the calc row imported by ``rock tasks import swe`` and our terminal-bench task by
    ``rock tasks import terminal-bench``, as Harbor task folders."""
    from rock.cli.main import main

    out = root / "tasks"
    rows = write_rows(root / "rows.jsonl", [calc_row(calc_repo(root / "repos"))])
    assert main(["tasks", "import", "swe", str(rows), "--repos", str(root / "repos"), "--out", str(out),
                 "--test-cmd", "python3 -m unittest"]) == 0
    assert main(["tasks", "import", "terminal-bench", str(terminal_bench_task(root / "tb")), "--out", str(out)]) == 0
    return out


def harbor_trials(jobs: Path) -> dict:
    """task name -> (reward, exception) from every trial's result.json Harbor wrote under ``jobs``."""
    got = {}
    for path in jobs.glob("*/*/result.json"):
        result = json.loads(path.read_text())
        rewards = (result.get("verifier_result") or {}).get("rewards") or {}
        got[result["task_name"]] = (rewards.get("reward"), (result.get("exception_info") or {}).get("exception_message"))
    return got


@pytest.fixture(scope="module")
def harbor() -> Path:
    """Harbor 0.26's command in its own Python 3.12 venv (with the e2b extra), shared by the tests of
    both ways Harbor runs on ROCK (its e2b environment, and ROCK's environment for Harbor)."""
    try:
        return harbor_e2b_python().parent / "harbor"
    except VenvError as exc:
        pytest.skip(str(exc))
