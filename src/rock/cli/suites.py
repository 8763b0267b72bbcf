"""``rock suites``: the built-in agentic task suites on this host (``rock.agentic.tasks``).

    rock suites list                                    which are built, with how many tasks
    rock suites build [--suite NAME] [--seed 0] [--per-library 100] [--jobs N] [--mini-swe-agent]

Set-up builds none of them: a suite is built the first time a job, ``rock.make("agentic:...")``
or ``open_suite`` needs it, or at once with ``rock suites build``. Progress lines go to stderr;
stdout is the table (or ``--json``).
"""

from __future__ import annotations

import argparse
import time

from rock.cli.output import Out


def add_parser(sub) -> None:
    """Register ``rock suites`` (list, build) on the ``rock`` parser ``sub``."""
    p = sub.add_parser("suites", help="the built-in agentic task suites (pypi-bugs, humaneval-repo): list, build")
    s = p.add_subparsers(dest="suites_cmd", required=True)
    ls = s.add_parser("list", help="the built-in suites, whether this host has built them, and their size")
    ls.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    ls.set_defaults(func=cmd_list)
    from rock.agentic.tasks.build import JOBS, PER_LIBRARY, SEED, SUITES

    b = s.add_parser("build", help="build (or find) the suites now, with progress on stderr")
    b.add_argument("--suite", action="append", choices=list(SUITES), help="only this suite (repeatable; default all)")
    b.add_argument("--seed", type=int, default=SEED, help=f"pypi-bugs' mutant order (default {SEED})")
    b.add_argument("--per-library", type=int, default=PER_LIBRARY,
                   help=f"pypi-bugs tasks per library (default {PER_LIBRARY})")
    b.add_argument("--jobs", type=int, default=JOBS, help="test runs at once while building, each in its own sandbox "
                   "(default: one per core)")
    b.add_argument("--mini-swe-agent", action="store_true",
                   help="also build the env image of the mini-swe-agent harness (from python:3.11)")
    b.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    b.set_defaults(func=cmd_build)


def _rows() -> list[dict]:
    from rock.agentic.tasks.pypi_bugs import cache_dir
    from rock.agentic.tasks.suites import BUILTIN, built

    rows = []
    for name, what in BUILTIN.items():
        manifest = built(name)
        tasks = (manifest or {}).get("tasks")
        rows.append({"suite": name, "built": manifest is not None,
                     "tasks": sum(tasks.values()) if isinstance(tasks, dict) else tasks,
                     "seed": (manifest or {}).get("seed"), "per_library": (manifest or {}).get("per_library"),
                     "path": str(cache_dir() / "suites" / name), "about": what})
    return rows


def cmd_list(args, out: Out) -> int:
    """``rock suites list``: the built-in suites, whether this host has built them, and their size."""
    out.rows(_rows(), ["suite", "built", "tasks", "seed", "per_library", "path"], title="agentic suites")
    return 0


def cmd_build(args, out: Out) -> int:
    """``rock suites build``: build (or find) the suites now, with progress on stderr."""
    from rock.agentic.tasks.build import build_suites, stderr_progress

    t0 = time.monotonic()
    build_suites(args.suite, args.seed, args.per_library, args.jobs, say=stderr_progress("suites"))
    rows = [r for r in _rows() if not args.suite or r["suite"] in args.suite]
    if args.mini_swe_agent:
        import asyncio

        from rock.agentic import mini_swe

        image = asyncio.run(mini_swe.ensure_image(progress=stderr_progress("mini-swe-agent image")))
        rows.append({"suite": "mini-swe-agent image", "built": True, "path": image.tag})
    if out.as_json:
        out.json({"suites": rows, "seconds": round(time.monotonic() - t0, 1)})
        return 0
    out.rows(rows, ["suite", "built", "tasks", "seed", "per_library", "path"],
             title=f"agentic suites ({time.monotonic() - t0:.0f} s)")
    return 0
