"""python -m bench [--quick] [--out FILE.json] [--backends docker,bwrap,local] [--only runtime,sdk,envs,burst,cluster]

Runs every part the machine supports, prints one table, writes the JSON records.
It never fails because a machine is slow: targets are read from the table, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys

from bench.plots import draw
from bench.report import Context, print_table, write_json
from rock.runtime import get_runtime_class

# Bursts last: 100 sandboxes are torn down for seconds after each, which would show in any
# latency measured next.
PARTS = ["runtime", "sdk", "parity", "envs", "gym", "training", "agentic", "ui", "burst"]
# Only in a full run or when asked: long runs (10,000 lifecycles, thousands of idle sandboxes,
# 1,000 sandboxes on three local Ray nodes, Schemathesis over every route).
FULL_ONLY = ["soak", "density", "cluster", "fuzz"]


def _runner(wanted: str):
    """The event loop a part asks for: ``uvloop`` where it measures code that runs inside the
    admin (uvicorn runs the admin on uvloop); clients stay on asyncio's default, as users have it."""
    if wanted == "uvloop":
        try:
            import uvloop

            return uvloop.run, "uvloop"
        except ImportError:
            pass
    return asyncio.run, "asyncio"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a couple of minutes)")
    parser.add_argument("--out", default="bench-results.json", help="where to write the JSON records")
    parser.add_argument("--backends", default="docker,bwrap,local")
    parser.add_argument("--only", help=f"parts to run, of {', '.join(PARTS + FULL_ONLY)} (default: all; "
                                       f"{', '.join(FULL_ONLY)} only without --quick)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    backends = []
    for name in args.backends.split(","):
        reason = get_runtime_class(name).available()
        if reason:
            print(f"[bench] skipping backend {name}: {reason}", file=sys.stderr)
        else:
            backends.append(name)
    ctx = Context(backends=backends, quick=args.quick)
    parts = args.only.split(",") if args.only else PARTS + ([] if args.quick else FULL_ONLY)
    for part in parts:
        try:
            module = importlib.import_module(f"bench.{part}")
        except ImportError as exc:
            print(f"[bench] part {part} unavailable: {exc}", file=sys.stderr)
            continue
        ctx.progress(f"== {part} ==")
        run, loop = _runner(getattr(module, "LOOP", "asyncio"))
        records = run(module.run(ctx))
        for r in records:
            r.setdefault("event_loop", loop)
        ctx.records.extend(records)
        write_json(ctx.records, args.out)  # keep what we have if a later part breaks
    print_table(ctx.records)
    write_json(ctx.records, args.out)
    print(f"\nwrote {len(ctx.records)} records to {args.out}")
    for picture in draw(ctx.records, args.out):
        print(f"drew {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
