"""The built-in agentic suites are built when first needed, or by ``rock suites build``, never
silently: each test points $ROCK_AGENTIC_CACHE at an empty folder (a host that never built them)
and checks the progress lines on stderr and what was built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from rock.agentic.tasks.suites import open_suite



def rock(*args: str, cache, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROCK_AGENTIC_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cache, timeout=timeout)


def test_suites_build_reports_progress_and_list_shows_it(tmp_path):
    before = json.loads(rock("--json", "suites", "list", cache=tmp_path).stdout)
    assert [(r["suite"], r["built"]) for r in before] == [("pypi-bugs", False), ("humaneval-repo", False)]
    proc = rock("--json", "suites", "build", "--suite", "humaneval-repo", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the progress line is on stderr (stdout is the result), tagged and timed
    assert any(line.startswith("[suites ") and "humaneval-repo: 164 tasks in" in line
               for line in proc.stderr.splitlines()), proc.stderr
    result = json.loads(proc.stdout)
    assert [(r["suite"], r["built"], r["tasks"]) for r in result["suites"]] == [("humaneval-repo", True, 164)]
    assert (tmp_path / "suites" / "humaneval-repo" / "humaneval-163" / "tests" / "test.sh").exists()
    after = {r["suite"]: r["built"] for r in json.loads(rock("--json", "suites", "list", cache=tmp_path).stdout)}
    assert after == {"pypi-bugs": False, "humaneval-repo": True}


def test_suites_build_pypi_bugs_small(tmp_path, monkeypatch):
    """pypi-bugs from an empty cache: the sdists from PyPI, each library's baseline test run and the
    mutants tried until one bug per library is kept."""
    proc = rock("--json", "suites", "build", "--suite", "pypi-bugs", "--per-library", "1", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for lib in ("cachetools", "toolz", "boltons"):
        assert f"pip download {lib}==" in proc.stderr and f"{lib}: 1/1 (" in proc.stderr, proc.stderr[-3000:]
    [row] = json.loads(proc.stdout)["suites"]
    assert (row["suite"], row["tasks"], row["per_library"], row["seed"]) == ("pypi-bugs", 3, 1, 0)
    monkeypatch.setenv("ROCK_AGENTIC_CACHE", str(tmp_path))
    ids = open_suite("pypi-bugs").ids()
    assert sorted(i.rsplit("-", 1)[0] for i in ids) == ["boltons", "cachetools", "toolz"]


def test_open_suite_builds_a_missing_suite_once_for_concurrent_callers(tmp_path, monkeypatch):
    """Two callers find humaneval-repo missing at once: one builds it, the other waits for that
    build (a lock per suite) and opens the same folder; both say what is happening."""
    said: list[list[str]] = [[], []]
    got: list = [None, None]

    def one(i):
        got[i] = open_suite("humaneval-repo", said[i].append)

    monkeypatch.setenv("ROCK_AGENTIC_CACHE", str(tmp_path))
    threads = [threading.Thread(target=one, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(folder is not None and len(folder.ids()) == 164 for folder in got)
    for lines in said:
        assert lines[0].startswith("suite humaneval-repo is not built on this host yet: building it now"), lines
    built = [line for lines in said for line in lines if line.startswith("humaneval-repo: 164 tasks in")]
    assert len(built) == 1, said


def test_job_on_a_host_without_the_suite_builds_it_with_progress(admin, tmp_path):
    """`rock job run --suite humaneval-repo` where it was never built: it says so, builds it, and
    the job runs (the oracle solves the task)."""
    proc = rock("--json", "job", "run", "--url", admin.url, "--suite", "humaneval-repo", "--task", "humaneval-000",
                "--policy", "oracle", "--out", str(tmp_path / "job.jsonl"), cache=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if "is not built on this host yet: building it now" in line)
    assert any("humaneval-repo: 164 tasks in" in line for line in lines[first:]), proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["tasks"], summary["mean_reward"], summary["errors"]) == (1, 1.0, 0), summary


def test_make_agentic_env_builds_a_missing_suite_saying_so(tmp_path, monkeypatch, capfd):
    """rock.make("agentic:...") opens its suite at make: where it was never built, it is built
    there, with its lines on stderr (nothing else is printed on stdout)."""
    import rock

    monkeypatch.setenv("ROCK_AGENTIC_CACHE", str(tmp_path))
    env = rock.make("agentic:humaneval-repo", task_id="humaneval-007")
    try:
        out, err = capfd.readouterr()
        assert out == "" and "[building humaneval-repo " in err and "is not built on this host yet" in err, err
        assert "humaneval-repo: 164 tasks in" in err, err
        assert (tmp_path / "suites" / "humaneval-repo" / "humaneval-007" / "instruction.md").exists()
    finally:
        env.close()
