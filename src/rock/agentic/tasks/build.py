"""``python -m rock.agentic.tasks.build``: make the built-in suites (scripts/setup-host.sh runs it).

    python -m rock.agentic.tasks.build [--seed 0] [--per-library 100] [--jobs N] [--suite pypi-bugs]

Deterministic from the seed; everything lands in the cache ($ROCK_AGENTIC_CACHE, default
~/.cache/rock/agentic), never in the repository. A second run with the same options finds the
suites and returns at once; a bigger one reuses every mutant already tried.
"""

from __future__ import annotations

import argparse
import time

from rock.agentic.tasks import humaneval_repo
from rock.agentic.tasks.pypi_bugs import Builder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rock.agentic.tasks.build", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-library", type=int, default=100, help="pypi-bugs tasks per library")
    p.add_argument("--jobs", type=int, default=None, help="test runs at once, each in its own sandbox (default: "
                   "one per core)")
    p.add_argument("--suite", action="append", choices=["pypi-bugs", "humaneval-repo"],
                   help="only this suite (repeatable; default both)")
    args = p.parse_args(argv)
    suites = args.suite or ["humaneval-repo", "pypi-bugs"]
    t0 = time.monotonic()
    if "humaneval-repo" in suites:
        humaneval_repo.build()
    if "pypi-bugs" in suites:
        Builder(args.seed, args.per_library, args.jobs).build()
    print(f"agentic suites ready ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
