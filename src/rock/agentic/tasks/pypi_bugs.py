"""``pypi-bugs``: real libraries' source distributions with one procedural bug each (SWE-smith's recipe).

Built by ``python -m rock.agentic.tasks.build``, deterministically from a seed: pinned sdists are
downloaded with pip (``--no-binary :all: --no-deps``) into the cache; a library's own test suite
is run once as the baseline; then mutants (``mutate.py``) are tried in the seed's order. Every
test run (and pip, which may run an sdist's build backend) happens in a sandbox, never on the
host (``testbox``): the verifier's runner in sandboxes of the verifier image, one per core. A mutant is kept when, over the test files that name the changed function,
some baseline-passing tests fail (fail-to-pass) and others still pass (pass-to-pass). Each kept
mutant becomes a Harbor task folder: the buggy repository without its tests (the agent's
workspace), the tests as the hidden verifier's files, and the inverse change as the oracle.
Every mutant's result is cached, so a second build (or a bigger one) only runs what is new.

Candidates checked on this machine: cachetools, toolz and boltons run with pytest alone in
seconds and are kept; python-dateutil 4.0.0's tests need freezegun (not pytest alone) and
more-itertools 11.2.1's take ~70 s (its prime tests alone 32 s), so both are left out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rock.agentic.tasks import mutate
from rock.agentic.tasks.testbox import results_of

PLUGIN = Path(__file__).parent / "verifier" / "box" / "rock_verify_report.py"
GRADE = Path(__file__).parent / "verifier" / "box" / "grade.py"


@dataclass(frozen=True)
class Library:
    """A PyPI library the suite mutates: its name and pinned version, the folder whose modules are mutated, its
    test folders (hidden from the agent) and the import path its tests need."""

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
BASE = "python:3.11"  # the suite's image (task.toml's docker_image)
MAX_PER_FUNCTION = 2
EVALS = "evals-v2.jsonl"  # v2: tests seeded (random.seed(0) per test, PYTHONHASHSEED=0)


def cache_dir() -> Path:
    """Where built suites, sdists and test-run results are kept: ROCK_AGENTIC_CACHE, else ~/.cache/rock/agentic."""
    return Path(os.environ.get("ROCK_AGENTIC_CACHE") or Path.home() / ".cache" / "rock" / "agentic")


async def fetch(lib: Library, cache: Path, say=print) -> Path:
    """The library's unpacked sdist (downloaded once, by pip in a build sandbox)."""
    src = cache / "src" / f"{lib.name}-{lib.version}"
    if (src / ".complete").exists():
        return src
    dl = cache / "sdists"
    dl.mkdir(parents=True, exist_ok=True)
    names = (f"{lib.name.replace('-', '_')}-{lib.version}.tar.gz", f"{lib.name}-{lib.version}.tar.gz")
    if not any((dl / n).exists() for n in names):
        from rock.agentic.tasks.testbox import download_sdist

        name, data = await download_sdist(lib.name, lib.version, BASE, say)
        (dl / name).write_bytes(data)
    archive = next(dl / n for n in names if (dl / n).exists())
    tmp = Path(tempfile.mkdtemp(dir=cache))
    with tarfile.open(archive) as tar:  # read as bytes, never run: the data filter, nothing outside tmp
        tar.extractall(tmp, filter="data")
    top = next(tmp.iterdir())
    if src.exists():
        shutil.rmtree(src)
    src.parent.mkdir(parents=True, exist_ok=True)
    top.rename(src)
    shutil.rmtree(tmp)
    (src / ".complete").write_text("ok\n")
    return src


def test_files(repo: Path, lib: Library) -> list[str]:
    """The library's test files (``test_*.py`` under its test folders), relative to the repository, sorted."""
    return sorted(str(p.relative_to(repo)) for t in lib.tests for p in (repo / t).rglob("test_*.py"))


def select(repo: Path, files: list[str], m: mutate.Mutant, texts: dict[str, str]) -> list[str]:
    """The test files that name the changed function (its class for a dunder or a short name)."""
    cls, _, name = m.function.rpartition(".")
    word = cls if cls and (name.startswith("__") or len(name) < 4) else name
    pattern = re.compile(r"\b%s\b" % re.escape(word))
    return [f for f in files if pattern.search(texts[f])]


class Builder:
    """Builds the suite: each library's baseline and its mutants' test runs in sandboxes of the
    verifier image (``testbox.TestBox``), ``jobs`` at once (default: one per core)."""

    def __init__(self, seed: int = 0, per_library: int = 100, jobs: int | None = None, cache: Path | None = None,
                 libraries: list[Library] | None = None, say=print, out: Path | None = None):
        self.seed, self.per_library, self.jobs = seed, per_library, max(1, jobs or os.cpu_count() or 2)
        self.cache = Path(cache or cache_dir())
        self.libraries = libraries or LIBRARIES
        self.say = say
        self._out = Path(out) if out else None

    @property
    def out(self) -> Path:
        """The suite's folder: the one given, else ``pypi-bugs`` under the cache's suites."""
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
        counts = _run(self._build_all(staging))
        (staging / "manifest.json").write_text(json.dumps(
            {"key": key, "seed": self.seed, "per_library": self.per_library, "tasks": counts,
             "libraries": {l.name: l.version for l in self.libraries}, "left_out": LEFT_OUT}, indent=1))
        shutil.rmtree(self.out, ignore_errors=True)
        staging.rename(self.out)
        self.say(f"pypi-bugs: {sum(counts.values())} tasks in {self.out} ({counts})")
        return self.out

    async def _build_all(self, staging: Path) -> dict[str, int]:
        async with contextlib.AsyncExitStack() as stack:
            boxes = _Boxes(self.jobs, stack, self.say)
            return {lib.name: await self.build_library(lib, staging, boxes) for lib in self.libraries}

    async def build_library(self, lib: Library, out: Path, boxes: "_Boxes") -> int:
        """Write ``lib``'s tasks under ``out`` and return how many: run its tests once as the baseline, then try
        mutants in the seed's order (``jobs`` at once, results cached) and keep up to ``per_library`` that make
        some passing test fail while others still pass, at most MAX_PER_FUNCTION per function."""
        repo = await fetch(lib, self.cache, self.say)
        work = self.cache / "work" / f"{lib.name}-{lib.version}"
        work.mkdir(parents=True, exist_ok=True)
        files = test_files(repo, lib)
        texts = {f: (repo / f).read_text(errors="replace") for f in files}
        base_path = work / ("baseline-" + EVALS.split("-")[1].split(".")[0] + ".json")
        if not base_path.exists():
            self.say(f"{lib.name} {lib.version}: baseline run of {len(files)} test files (in a sandbox)")
            box = await boxes.take(repo)
            try:
                base_path.write_text(json.dumps(results_of(await box.run(files, [lib.pythonpath], RUN_TIMEOUT))))
            finally:
                boxes.give(box)
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

        async def evaluate(m: mutate.Mutant) -> dict:
            chosen = select(repo, files, m, texts)
            if not chosen:
                return {"files": chosen, "results": {}}
            box = await boxes.take(repo)
            try:
                text = (repo / m.path).read_text().replace(m.original, m.mutated, 1)
                report = await box.run(chosen, [lib.pythonpath], RUN_TIMEOUT, {m.path: text})
            finally:
                boxes.give(box)
            return {"files": chosen, "results": results_of(report)}

        # Mutants are decided in the seed's order, as a one-at-a-time build would (and as a rebuild
        # from the cache does): the next ones are evaluated ahead, ``jobs`` at once, and a result
        # is only looked at when its turn comes, so the suite never depends on which run ended first.
        running: dict[str, asyncio.Future] = {}

        def wanted(i: int) -> bool:
            m = candidates[i]
            return (m.key not in evals and per_fn.get((m.path, m.function), 0) < MAX_PER_FUNCTION
                    and mutate.parses(m, (repo / m.path).read_text()))

        def ahead(i: int) -> None:
            j = i
            while len(running) < self.jobs and j < len(candidates):
                m = candidates[j]
                if m.key not in running and wanted(j):
                    running[m.key] = asyncio.ensure_future(evaluate(m))
                j += 1

        try:
            for i, m in enumerate(candidates):
                if len(kept) >= self.per_library:
                    break
                if m.key not in evals and (m.key in running or wanted(i)):
                    if m.key not in running:
                        running[m.key] = asyncio.ensure_future(evaluate(m))
                    ahead(i)
                    evals[m.key] = await running.pop(m.key)  # evaluated ahead and no longer wanted: cached
                    if evals[m.key]["results"] or not evals[m.key]["files"]:
                        # No result at all (not even a collection error) is a run that hung or a
                        # runner that failed, not a property of the mutant: tried again next build.
                        self._save_eval(work, m.key, evals[m.key])
                if m.key in evals and self._keep(m, evals[m.key], baseline, kept, per_fn):
                    self.say(f"{lib.name}: {len(kept)}/{self.per_library} ({m.key})")
        finally:
            for fut in running.values():
                fut.cancel()
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)
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

    @staticmethod
    def _load_evals(work: Path) -> dict:
        path = work / EVALS
        evals = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by an interrupted build
                ev = row.get("eval") if isinstance(row, dict) else None
                if isinstance(ev, dict) and (ev.get("results") or not ev.get("files")):
                    evals[row["key"]] = ev  # (an empty result, cached by builds before this rule, is tried again)
        return evals

    @staticmethod
    def _save_eval(work: Path, key: str, ev: dict) -> None:
        with open(work / EVALS, "a") as f:
            f.write(json.dumps({"key": key, "eval": ev}) + "\n")


class _Boxes:
    """Up to ``jobs`` test sandboxes, started when first needed (a build whose every mutant is in
    the cache starts none), each holding one library's repository at a time."""

    def __init__(self, jobs: int, stack: contextlib.AsyncExitStack, say):
        self.jobs, self.stack, self.say = jobs, stack, say
        self.free: asyncio.Queue = asyncio.Queue()
        self.made = 0
        self.holding: dict = {}  # box -> the repository loaded in it

    async def take(self, repo: Path):
        from rock.agentic.tasks import verifier
        from rock.agentic.tasks.testbox import TestBox

        if self.free.empty() and self.made < self.jobs:
            self.made += 1
            image = await verifier.image_for(BASE, self.say)
            box = await self.stack.enter_async_context(TestBox(image))
            self.say(f"test sandbox {box.sandbox_id} up ({self.made} of at most {self.jobs})")
        else:
            box = await self.free.get()
        if self.holding.get(box) != repo:
            await box.load(repo)
            self.holding[box] = repo
        return box

    def give(self, box) -> None:
        self.free.put_nowait(box)


def _run(coro):
    """``coro`` to its end, also when called from a thread that runs an event loop already."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with cf.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


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
    """The task's instruction.md: the library, the failing tests (the first ten, each with its first error line),
    and that the hidden tests run on the agent's change."""
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
    """Write one task folder at ``dest``: the mutated repository as the workspace, the hidden tests with their
    FAIL_TO_PASS / PASS_TO_PASS lists, the reference fix and task.toml."""
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
