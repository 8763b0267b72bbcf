"""SWE-bench-shaped rows (SWE-bench, SWE-Gym, SWE-smith, R2E-Gym, SWE-rebench) as Harbor task folders.

A row: ``instance_id``, ``repo`` (``owner/name``), ``base_commit``, ``patch`` (the fix),
``test_patch`` (the tests that show it), ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` (test ids, lists or
JSON-encoded lists), ``problem_statement``. The repository comes from a local clone under
``repos`` (``owner__name``, ``owner/name`` or ``name``), read with git's plumbing, or, without one,
from an image the engine has (the row's ``image_name`` or ``--image``, repository at the workdir).

    <instance_id>/instruction.md         the problem statement
    <instance_id>/task.toml              [environment] workdir (/testbed), [metadata] the row's identity
    <instance_id>/environment/Dockerfile FROM the base image, COPY repo/ (the clone at base_commit);
                                         or FROM the row's image, which holds the repository
    <instance_id>/tests/test.sh          the test patch applied over the agent's change, then the listed
                                         tests: reward 1 only when every one passed, else 0
    <instance_id>/tests/tests.txt        FAIL_TO_PASS then PASS_TO_PASS, one id a line (swe.json: both lists)
    <instance_id>/tests/test.patch       the row's test_patch; with a clone also tests/files/ (the files
                                         it changes, as they are after it) and tests/deleted.txt
    <instance_id>/solution/solve.sh      the row's patch (solution/fix.patch; with a clone as files/)

The hidden tests live only in tests/, which the agent never sees. With a clone the patched files
are computed on the host in a throwaway index, so neither sandbox needs git or patch; with an
image, the scripts run ``git apply`` inside it (SWE-bench's images have git).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rock.agentic.importers.common import (
    NETWORK_MODE,
    ImportResult,
    discard,
    fresh_folder,
    task_name,
    toml_dumps,
    write_script,
)
from rock.agentic.importers.gitrepo import Clone
from rock.agentic.tasks.errors import TaskError

WORKDIR = "/testbed"
BASE_IMAGE = "python:3.11"
TEST_CMD = "python3 -m pytest -rA -p no:cacheprovider"
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

# Writes reward 0 first, so a test run that dies still leaves a number; 1 only when the test
# command, given every listed id, exits 0 (pytest exits non-zero when an id fails or is missing).
TEST_SH = """#!/bin/bash
# SWE-bench's check: the test patch over the agent's change, then FAIL_TO_PASS and PASS_TO_PASS.
mkdir -p /logs/verifier
echo 0 > /logs/verifier/reward.txt
cd {workdir} || exit 1
{apply}
mapfile -t ids < /tests/tests.txt
{test_cmd} "${{ids[@]}}"
code=$?
if [ $code -eq 0 ]; then echo 1 > /logs/verifier/reward.txt; fi
exit $code
"""
APPLY_FILES = """# The files the test patch changes, as they are after it, and the ones it deletes.
if [ -d /tests/files ]; then cp -R --preserve=mode /tests/files/. ./ || {{ echo "{what}: could not copy the test files"; exit 1; }}; fi
while IFS= read -r p; do [ -n "$p" ] && rm -f -- "$p"; done < /tests/deleted.txt"""
APPLY_GIT = """git apply --verbose /tests/test.patch || {{ echo "{what}: the test patch does not apply"; exit 1; }}"""
SOLVE_SH = """#!/bin/bash
# The reference fix (the row's patch).
set -e
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
cd {workdir}
{apply}
"""
SOLVE_FILES = """if [ -d "$here/files" ]; then cp -R --preserve=mode "$here/files/." ./; fi
while IFS= read -r p; do [ -n "$p" ] && rm -f -- "$p"; done < "$here/deleted.txt\""""
SOLVE_GIT = """git apply --verbose "$here/fix.patch\""""


def read_rows(path: Path) -> list[tuple[str, dict | str]]:
    """The rows of a JSONL file (or a JSON list) as ``(name, row)``; a line that is no JSON object comes back as
    ``(name, reason)`` so the import reports it and goes on."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise TaskError(f"{path}: not JSON ({exc})", "BadTask") from None
        lines = [(f"{path} item {i}", item) for i, item in enumerate(items)]
    else:
        lines = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                lines.append((f"{path} line {n}", json.loads(line)))
            except ValueError as exc:
                lines.append((f"{path} line {n}", f"{path} line {n}: not a JSON object ({exc})"))
    out: list[tuple[str, dict | str]] = []
    for where, row in lines:
        if isinstance(row, dict):
            name = row.get("instance_id")
            out.append((name if isinstance(name, str) and name else where, row))
        else:
            out.append((where, row if isinstance(row, str) else f"{where}: not a JSON object"))
    return out


def test_ids(row: dict, key: str, what: str) -> list[str]:
    """A row's FAIL_TO_PASS / PASS_TO_PASS: a list, or a JSON-encoded list, of test ids (one line each)."""
    value = row.get(key, [])
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise TaskError(f"{what}: {key} is neither a list nor a JSON-encoded list", "BadTask") from None
    if not isinstance(value, list) or not all(isinstance(t, str) and t and "\n" not in t and "\r" not in t
                                              for t in value):
        raise TaskError(f"{what}: {key} must be a list of test ids (strings of one line)", "BadTask")
    return value


def find_clone(repos: Path | None, repo: str) -> Path | None:
    """The clone of ``owner/name`` under ``repos``: ``owner__name``, ``owner/name`` or ``name``."""
    if repos is None:
        return None
    owner, name = repo.split("/")
    for candidate in (repos / f"{owner}__{name}", repos / owner / name, repos / name):
        if candidate.is_dir():
            return candidate
    return None


def import_rows(rows: Path, out: Path, repos: Path | None = None, *, image: str | None = None,
                base_image: str = BASE_IMAGE, test_cmd: str = TEST_CMD, workdir: str = WORKDIR,
                agent_timeout: float = 1800.0, verifier_timeout: float = 900.0) -> ImportResult:
    """Each row of ``rows`` (JSONL, or a JSON list) as a task folder under ``out``. The repository: a clone under
    ``repos``; else the row's ``image_name`` or ``image`` (``{instance_id}`` is replaced), an image that holds it
    at ``workdir``. A row with neither fails naming its instance_id; the others go on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = ImportResult()
    for name, row in read_rows(Path(rows)):
        if isinstance(row, str):
            result.failed.append((name, row))
            continue
        target = None
        try:
            what = f"row {name}"
            tid = task_name(row.get("instance_id"), f"{what} instance_id")
            target = fresh_folder(out, tid)
            _write(row, tid, target, repos, image, base_image, test_cmd, workdir, agent_timeout, verifier_timeout)
            result.imported.append(target)
        except TaskError as exc:
            if target is not None:
                discard(target)
            result.failed.append((name, exc.message))
    return result


def _field(row: dict, key: str, what: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{what}: {key} is missing or empty", "BadTask")
    return value


def _write(row: dict, tid: str, target: Path, repos: Path | None, image: str | None, base_image: str,
           test_cmd: str, workdir: str, agent_timeout: float, verifier_timeout: float) -> None:
    what = f"row {tid}"
    if not workdir.startswith("/") or any(c.isspace() for c in workdir) or ".." in workdir.split("/"):
        raise TaskError(f"workdir {workdir!r} must be an absolute path without spaces", "BadRequest")
    repo = _field(row, "repo", what)
    if not _REPO.fullmatch(repo) or ".." in repo:
        raise TaskError(f"{what}: repo {repo!r} is not owner/name", "BadTask")
    patch, test_patch = _field(row, "patch", what), _field(row, "test_patch", what)
    statement = _field(row, "problem_statement", what)
    f2p, p2p = test_ids(row, "FAIL_TO_PASS", what), test_ids(row, "PASS_TO_PASS", what)
    if not f2p:
        raise TaskError(f"{what}: FAIL_TO_PASS is empty: nothing would show the fix", "BadTask")
    clone = find_clone(repos, repo)
    row_image = row.get("image_name") or (image.replace("{instance_id}", tid) if image else None)
    env, tests, solution = target / "environment", target / "tests", target / "solution"
    for folder in (env, tests, solution):
        folder.mkdir()
    if clone is not None:
        git = Clone(clone, what)
        commit = git.commit(row.get("base_commit"))
        git.write(git.entries(commit), env / "repo")
        fixed, fix_deleted = git.apply(commit, patch, "patch")
        tested, test_deleted = git.apply(commit, test_patch, "test_patch")
        git.write(fixed, solution / "files")
        git.write(tested, tests / "files")
        (solution / "deleted.txt").write_text("".join(f"{p}\n" for p in fix_deleted))
        (tests / "deleted.txt").write_text("".join(f"{p}\n" for p in test_deleted))
        dockerfile = f"FROM {base_image}\nCOPY repo/ {workdir}/\nWORKDIR {workdir}\n"
        apply_tests, apply_fix = APPLY_FILES.format(what=tid), SOLVE_FILES
    elif isinstance(row_image, str) and row_image.strip():
        if any(c.isspace() for c in row_image):
            raise TaskError(f"{what}: image {row_image!r} is not an image name", "BadTask")
        dockerfile = f"FROM {row_image}\nWORKDIR {workdir}\n"
        apply_tests, apply_fix = APPLY_GIT.format(what=tid), SOLVE_GIT
    else:
        looked = f"under {repos} (as {repo.replace('/', '__')}, {repo} or {repo.split('/')[1]})" if repos else \
            "(no --repos given)"
        raise TaskError(f"{what}: the repository {repo} is not given: no clone {looked} and no image (the row's "
                        "image_name or --image)", "BadTask")
    (env / "Dockerfile").write_text(dockerfile)
    (tests / "test.patch").write_text(test_patch)
    (tests / "tests.txt").write_text("".join(f"{t}\n" for t in f2p + p2p))
    (tests / "swe.json").write_text(json.dumps({"FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p}, indent=1) + "\n")
    write_script(tests / "test.sh", TEST_SH.format(workdir=workdir, apply=apply_tests, test_cmd=test_cmd))
    (solution / "fix.patch").write_text(patch)
    write_script(solution / "solve.sh", SOLVE_SH.format(workdir=workdir, apply=apply_fix))
    (target / "instruction.md").write_text(statement if statement.endswith("\n") else statement + "\n")
    meta = {"instance_id": tid, "repo": repo, "base_commit": row.get("base_commit"), "source": "swe"}
    (target / "task.toml").write_text(toml_dumps({
        "metadata": {k: v for k, v in meta.items() if isinstance(v, str)},
        "agent": {"timeout_sec": float(agent_timeout)},
        "verifier": {"timeout_sec": float(verifier_timeout)},
        "environment": {"workdir": workdir, "network_mode": NETWORK_MODE}}))
