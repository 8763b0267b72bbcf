"""``python -m rock.agentic.tasks.build`` (or ``rock suites build``): make the built-in suites.

    python -m rock.agentic.tasks.build [--seed 0] [--per-library 100] [--jobs N] [--suite pypi-bugs]

Deterministic from the seed; everything lands in the cache ($ROCK_AGENTIC_CACHE, default
~/.cache/rock/agentic), never in the repository. A second run with the same options finds the
suites and returns at once; a bigger one reuses every mutant already tried. Set-up does not run
it: a suite is built when first opened (``rock.agentic.tasks.suites.open_suite``), or by this.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import sys
import time
from pathlib import Path
from typing import Callable

from rock.agentic.tasks import humaneval_repo
from rock.agentic.tasks.pypi_bugs import Builder, cache_dir

SUITES = ("humaneval-repo", "pypi-bugs")  # built in this order: the one that takes seconds first
SEED, PER_LIBRARY = 0, 100  # what set-up built before, and what a suite opened unbuilt gets
JOBS = None  # test sandboxes at once: one per core


def stderr_progress(what: str) -> Callable[[str], None]:
    """A progress callback printing ``[what 12s] line`` on stderr (stdout stays the command's result),
    the seconds counted from this call: a person watching a long build sees it move."""
    t0 = time.monotonic()

    def say(line: str) -> None:
        print(f"[{what} {time.monotonic() - t0:.0f}s] {line}", file=sys.stderr, flush=True)

    return say


@contextlib.contextmanager
def _suite_lock(name: str):
    """One build of a suite at a time on this host: a job, the CLI and a test may all find it
    missing at once, and each build replaces the suite's folder through the same staging folder."""
    root = cache_dir() / "suites"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_suites(suites=None, seed: int = SEED, per_library: int = PER_LIBRARY, jobs: int | None = JOBS,
                 say: Callable[[str], None] = print) -> dict[str, Path]:
    """Build (or find) the named built-in suites (default: both) in the cache; ``say`` gets the
    progress lines. Returns each suite's folder."""
    wanted = list(suites or SUITES)
    unknown = [s for s in wanted if s not in SUITES]
    if unknown:
        raise ValueError(f"not a built-in suite: {', '.join(unknown)} (built-in: {', '.join(SUITES)})")
    folders = {}
    for name in (s for s in SUITES if s in wanted):
        with _suite_lock(name):
            if name == "humaneval-repo":
                folders[name] = humaneval_repo.build(say=say)
            else:
                folders[name] = Builder(seed, per_library, jobs, say=say).build()
    return folders


def main(argv=None) -> int:
    """``python -m rock.agentic.tasks.build``: build (or find) the built-in suites, in sandboxes; exit status 0
    when they are ready."""
    p = argparse.ArgumentParser(prog="python -m rock.agentic.tasks.build", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--per-library", type=int, default=PER_LIBRARY, help="pypi-bugs tasks per library")
    p.add_argument("--jobs", type=int, default=JOBS, help="test runs at once, each in its own sandbox (default: "
                   "one per core)")
    p.add_argument("--suite", action="append", choices=list(SUITES), help="only this suite (repeatable; default both)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    build_suites(args.suite, args.seed, args.per_library, args.jobs)
    print(f"agentic suites ready ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
