"""``pypi-bugs``: real libraries' source distributions with one procedural bug each (SWE-smith's recipe).

Built on the host at set-up (``python -m rock.agentic.tasks.build``), deterministically from a
seed: pinned sdists are downloaded with pip (``--no-binary :all: --no-deps``) into the cache; a
library's own test suite is run once as the baseline; then mutants (``mutate.py``) are tried in
the seed's order. A mutant is kept when, over the test files that name the changed function,
some baseline-passing tests fail (fail-to-pass) and others still pass (pass-to-pass). Each kept
mutant becomes a Harbor task folder: the buggy repository without its tests (the agent's
workspace), the tests as the hidden verifier's files, and the inverse change as the oracle.
Every mutant's result is cached, so a second build (or a bigger one) only runs what is new.

Candidates checked on this machine: cachetools, toolz and boltons run with pytest alone in
seconds and are kept; python-dateutil 4.0.0's tests need freezegun (not pytest alone) and
more-itertools 11.2.1's take ~70 s (its prime tests alone 32 s), so both are left out.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from rock.agentic.tasks import mutate
from rock.agentic.tasks.errors import TaskError

PLUGIN = Path(__file__).parent / "verifier" / "box" / "rock_verify_report.py"
GRADE = Path(__file__).parent / "verifier" / "box" / "grade.py"


@dataclass(frozen=True)
class Library:
    name: str  # PyPI name
    version: str
    package: str  # the folder whose modules are mutated
    tests: tuple[str, ...]  # test folders: hidden from the agent
    pythonpath: str = "."


LIBRARIES = [
    Library("cachetools", "8.0.1", "src/cachetools", ("tests",), "src"),
    Library("toolz", "1.2.0", "toolz", ("toolz/tests", "toolz/sandbox/tests")),
    Library("boltons", "26.2.0", "boltons", ("tests",)),
]
LEFT_OUT = {"python-dateutil": "its tests need freezegun, not pytest alone",
            "more-itertools": "its suite takes ~70 s (prime tests 32 s), not seconds"}
RUN_TIMEOUT = 60.0
MAX_PER_FUNCTION = 2
EVALS = "evals-v2.jsonl"  # v2: tests seeded (random.seed(0) per test, PYTHONHASHSEED=0)


def cache_dir() -> Path:
    return Path(os.environ.get("ROCK_AGENTIC_CACHE") or Path.home() / ".cache" / "rock" / "agentic")


def fetch(lib: Library, cache: Path, say=print) -> Path:
    """The library's unpacked sdist (downloaded with pip once)."""
    src = cache / "src" / f"{lib.name}-{lib.version}"
    if (src / ".complete").exists():
        return src
    dl = cache / "sdists"
    dl.mkdir(parents=True, exist_ok=True)
    if not list(dl.glob(f"{lib.name.replace('-', '_')}-{lib.version}.tar.gz")) + list(dl.glob(f"{lib.name}-{lib.version}.tar.gz")):
        say(f"pip download {lib.name}=={lib.version} (source distribution)")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                               "--no-binary", ":all:", "--no-deps", "-d", str(dl), f"{lib.name}=={lib.version}"],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise TaskError(f"downloading {lib.name}=={lib.version} failed: {proc.stderr.strip()[-500:]}", "BuildFailed")
    archive = next(iter(list(dl.glob(f"{lib.name.replace('-', '_')}-{lib.version}.tar.gz"))
                        + list(dl.glob(f"{lib.name}-{lib.version}.tar.gz"))))
    tmp = Path(tempfile.mkdtemp(dir=cache))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    top = next(tmp.iterdir())
    if src.exists():
        shutil.rmtree(src)
    src.parent.mkdir(parents=True, exist_ok=True)
    top.rename(src)
    shutil.rmtree(tmp)
    (src / ".complete").write_text("ok\n")
    return src


def run_tests(repo: Path, lib: Library, files: list[str], report: Path) -> dict:
    """The test files with the report plugin: {nodeid: {"outcome", "message"}} ({} if it hung)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN.parent), str(repo / lib.pythonpath)]),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "pytest", "-p", "rock_verify_report", f"--rock-report={report}",
           "-p", "no:cacheprovider", "-q", *files]
    try:
        subprocess.run(cmd, cwd=repo, env=env, capture_output=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {}
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    finally:
        report.unlink(missing_ok=True)
    results = data["tests"]
    for nodeid, message in data["collection_errors"].items():
        results[nodeid + "::<collection>"] = {"outcome": "failed", "message": message}
    return results


def test_files(repo: Path, lib: Library) -> list[str]:
    return sorted(str(p.relative_to(repo)) for t in lib.tests for p in (repo / t).rglob("test_*.py"))


def select(repo: Path, files: list[str], m: mutate.Mutant, texts: dict[str, str]) -> list[str]:
    """The test files that name the changed function (its class for a dunder or a short name)."""
    cls, _, name = m.function.rpartition(".")
    word = cls if cls and (name.startswith("__") or len(name) < 4) else name
    pattern = re.compile(r"\b%s\b" % re.escape(word))
    return [f for f in files if pattern.search(texts[f])]


class Builder:
    def __init__(self, seed: int = 0, per_library: int = 100, jobs: int = 2, cache: Path | None = None,
                 libraries: list[Library] | None = None, say=print, out: Path | None = None):
        self.seed, self.per_library, self.jobs = seed, per_library, max(1, jobs)
        self.cache = Path(cache or cache_dir())
        self.libraries = libraries or LIBRARIES
        self.say = say
        self._out = Path(out) if out else None
        self._lock = threading.Lock()

    @property
    def out(self) -> Path:
        return self._out or self.cache / "suites" / "pypi-bugs"

    def build(self) -> Path:
        """The suite's folder (rebuilt only when the seed, the size or the libraries changed)."""
        key = hashlib.sha256(json.dumps([self.seed, self.per_library, [l.__dict__ for l in self.libraries],
                                         PLUGIN.read_text(), GRADE.read_text(), TEST_SH, TASK_TOML],
                                        default=str).encode()).hexdigest()[:12]
        manifest = self.out / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text()).get("key") == key:
            return self.out
        staging = self.out.with_name(self.out.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        counts = {}
        for lib in self.libraries:
            counts[lib.name] = self.build_library(lib, staging)
        (staging / "manifest.json").write_text(json.dumps(
            {"key": key, "seed": self.seed, "per_library": self.per_library, "tasks": counts,
             "libraries": {l.name: l.version for l in self.libraries}, "left_out": LEFT_OUT}, indent=1))
        shutil.rmtree(self.out, ignore_errors=True)
        staging.rename(self.out)
        self.say(f"pypi-bugs: {sum(counts.values())} tasks in {self.out} ({counts})")
        return self.out

    def build_library(self, lib: Library, out: Path) -> int:
        repo = fetch(lib, self.cache, self.say)
        work = self.cache / "work" / f"{lib.name}-{lib.version}"
        work.mkdir(parents=True, exist_ok=True)
        files = test_files(repo, lib)
        texts = {f: (repo / f).read_text(errors="replace") for f in files}
        base_path = work / ("baseline-" + EVALS.split("-")[1].split(".")[0] + ".json")
        if not base_path.exists():
            self.say(f"{lib.name} {lib.version}: baseline run of {len(files)} test files")
            base_path.write_text(json.dumps(run_tests(repo, lib, files, work / "baseline.report.json")))
        baseline = {k: v["outcome"] for k, v in json.loads(base_path.read_text()).items()}
        candidates = []
        for module in sorted((repo / lib.package).rglob("*.py")):
            rel = str(module.relative_to(repo))
            if any(rel.startswith(t + "/") for t in lib.tests):
                continue
            candidates += mutate.mutants(rel, module.read_text())
        random.Random(f"{self.seed}:{lib.name}").shuffle(candidates)
        evals = self._load_evals(work)
        kept, per_fn = [], {}
        copies = [self._copy(repo, work, i) for i in range(self.jobs)]
        free = list(copies)

        def evaluate(m: mutate.Mutant) -> dict:
            with self._lock:
                tree = free.pop()
            try:
                target = tree / m.path
                original = target.read_text()
                target.write_text(original.replace(m.original, m.mutated, 1))
                try:
                    chosen = select(tree, files, m, texts)
                    results = run_tests(tree, lib, chosen, tree / ".rock-report.json") if chosen else {}
                finally:
                    target.write_text(original)
            finally:
                with self._lock:
                    free.append(tree)
            return {"files": chosen, "results": {k: v for k, v in results.items()}}

        queue = iter(candidates)
        with cf.ThreadPoolExecutor(self.jobs) as pool:
            running: dict[cf.Future, mutate.Mutant] = {}
            while len(kept) < self.per_library:
                for m in queue:
                    if per_fn.get((m.path, m.function), 0) >= MAX_PER_FUNCTION:
                        continue
                    if m.key not in evals and not mutate.parses(m, (repo / m.path).read_text()):
                        continue
                    if m.key in evals:
                        if self._keep(m, evals[m.key], baseline, kept, per_fn) and len(kept) >= self.per_library:
                            break
                        continue
                    running[pool.submit(evaluate, m)] = m
                    if len(running) >= self.jobs:
                        break
                if not running:
                    break
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    m = running.pop(fut)
                    evals[m.key] = fut.result()
                    self._save_eval(work, m.key, evals[m.key])
                    if len(kept) < self.per_library and self._keep(m, evals[m.key], baseline, kept, per_fn):
                        self.say(f"{lib.name}: {len(kept)}/{self.per_library} ({m.key})")
            for fut in running:
                fut.cancel()
        for i, (m, ev, f2p, p2p) in enumerate(kept):
            write_task(out / f"{lib.name}-{i:04d}", lib, repo, m, ev, f2p, p2p, self.seed)
        return len(kept)

    def _keep(self, m, ev, baseline, kept, per_fn) -> bool:
        if per_fn.get((m.path, m.function), 0) >= MAX_PER_FUNCTION or not ev["results"]:
            return False
        ran = {k for k in baseline if k.split("::")[0] in ev["files"] and baseline[k] == "passed"}
        outcome = {k: ev["results"].get(k, {}).get("outcome", "failed") for k in ran}
        f2p = sorted(k for k in ran if outcome[k] == "failed")
        p2p = sorted(k for k in ran if outcome[k] == "passed")
        if not f2p or not p2p:
            return False
        kept.append((m, ev, f2p, p2p))
        per_fn[(m.path, m.function)] = per_fn.get((m.path, m.function), 0) + 1
        return True

    def _copy(self, repo: Path, work: Path, i: int) -> Path:
        tree = work / f"tree-{i}"
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(repo, tree)
        return tree

    @staticmethod
    def _load_evals(work: Path) -> dict:
        path = work / EVALS
        evals = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    evals[row["key"]] = row["eval"]
                except (ValueError, KeyError):
                    continue  # a line cut short by an interrupted build
        return evals

    def _save_eval(self, work: Path, key: str, ev: dict) -> None:
        with self._lock, open(work / EVALS, "a") as f:
            f.write(json.dumps({"key": key, "eval": ev}) + "\n")


def _link_tree(src: Path, dest: Path, skip) -> None:
    """A copy made of hard links (tasks share the library's unchanged files)."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if skip(rel):
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def instruction(lib: Library, m: mutate.Mutant, ev: dict, f2p: list[str]) -> str:
    lines = [f"The repository in /workspace is {lib.name} {lib.version}, and it has a bug: these tests fail.", ""]
    for tid in f2p[:10]:
        msg = ev["results"].get(tid, {}).get("message", "").splitlines()
        lines.append(f"- `{tid}`" + (f": {msg[0][:300]}" if msg and msg[0] else ""))
    if len(f2p) > 10:
        lines.append(f"- and {len(f2p) - 10} more")
    lines += ["", "Fix the library's code so that they pass without breaking other tests. The test files are "
              "not in the workspace; they are run on your changes afterwards (changes to tests or pytest "
              "configuration are ignored)."]
    return "\n".join(lines) + "\n"


def write_task(dest: Path, lib: Library, repo: Path, m: mutate.Mutant, ev: dict, f2p, p2p, seed: int) -> None:
    hidden = lambda rel: any(str(rel) == t or str(rel).startswith(t + "/") for t in lib.tests)  # noqa: E731
    ws = dest / "environment" / "workspace"
    _link_tree(repo, ws, lambda rel: hidden(rel) or rel.name == ".complete")
    (ws / m.path).unlink()
    (ws / m.path).write_text((repo / m.path).read_text().replace(m.original, m.mutated, 1))
    files = dest / "tests" / "files"
    for t in lib.tests:
        _link_tree(repo / t, files / t, lambda rel: False)
    shutil.copy2(PLUGIN, dest / "tests" / PLUGIN.name)
    shutil.copy2(GRADE, dest / "tests" / GRADE.name)
    (dest / "tests" / "config.json").write_text(json.dumps(
        {"FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p, "test_files": ev["files"], "pythonpath": [lib.pythonpath],
         "overlay": "files"}, indent=1))
    (dest / "tests" / "test.sh").write_text(TEST_SH.format(pythonpath=lib.pythonpath, files=" ".join(ev["files"])))
    (dest / "solution").mkdir()
    (dest / "solution" / "fix.json").write_text(json.dumps({"path": m.path, "bad": m.mutated, "good": m.original}))
    (dest / "solution" / "solve.sh").write_text(SOLVE_SH)
    (dest / "instruction.md").write_text(instruction(lib, m, ev, f2p))
    (dest / "task.toml").write_text(TASK_TOML.format(name=lib.name, version=lib.version, fn=m.function, path=m.path,
                                                     op=m.operator, line=m.line, seed=seed))


TASK_TOML = """version = "1.0"

[metadata]
suite = "pypi-bugs"
library = "{name}"
library_version = "{version}"
function = "{fn}"
module = "{path}"
mutation = "{op}"
line = {line}
seed = {seed}

[agent]
timeout_sec = 600.0

[verifier]
timeout_sec = 120.0
runner = "pytest"

[environment]
docker_image = "python:3.11"
workdir = "/workspace"
"""

# ROCK runs these tasks' tests with its own runner (task.toml: runner = "pytest"; see
# rock.agentic.tasks.verifier), not with test.sh. test.sh is the same run for Harbor, which runs
# tests/test.sh as root in the task's image (with pytest installed there): the hidden tests over
# the workspace, pytest with the per-test report and no plugin autoload, the grade as the reward.
RUN_TESTS = """export PYTHONPATH="/tests:{pythonpath}" PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
python3 -m pytest -p rock_verify_report --rock-report=/logs/verifier/results.json -p no:cacheprovider \\
  --import-mode=append -q {files} > /logs/verifier/pytest.log 2>&1
python3 /tests/grade.py /tests/config.json /logs/verifier/results.json > /logs/verifier/reward.txt
"""

TEST_SH = """#!/bin/bash
# The hidden tests, copied over the workspace, run with the per-test report; the reward is
# SWE-bench's resolved (every FAIL_TO_PASS and PASS_TO_PASS test passes).
set -u
mkdir -p /logs/verifier
cd /workspace
cp -a /tests/files/. .
""" + RUN_TESTS

SOLVE_SH = """#!/bin/bash
# The oracle: the inverse of the bug's change (solution/fix.json), applied to the workspace.
set -eu
cd /workspace
python3 - "$(dirname "$0")/fix.json" <<'PY'
import json, sys
fix = json.load(open(sys.argv[1]))
text = open(fix["path"]).read()
assert text.count(fix["bad"]) == 1, "the buggy code is not where it was"
open(fix["path"], "w").write(text.replace(fix["bad"], fix["good"], 1))
PY
"""
