"""python -m bench [--quick] [--out FILE.json] [--backends docker,bwrap,local] [--only admission,runtime,snapshots,snapshots_api,sdk,envs,burst,cluster,scale_sim]

Runs every part the machine supports, prints one table, writes the JSON records.
It never fails because a machine is slow: targets are read from the table, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import sys
import traceback

from bench.plots import draw
from bench.report import Context, print_table, write_json
from rock.runtime import get_runtime_class

# Bursts last: 100 sandboxes are torn down for seconds after each, which would show in any
# latency measured next.
PARTS = ["admission", "runtime", "start_cpu", "snapshots", "snapshots_api", "sdk", "hotpath", "parity", "chat", "e2b", "e2b_snapshots", "e2b_templates", "bodies", "envs", "gym", "training", "agentic", "ui",
         "egress", "egress_secrets", "scale_sim", "burst"]
# Only in a full run or when asked: long runs (10,000 lifecycles, thousands of idle sandboxes,
# 1,000 sandboxes on three local Ray nodes, Schemathesis over every route, mini-swe-agent rollouts, Harbor jobs).
FULL_ONLY = ["soak", "density", "cluster", "fuzz", "fuzz_open", "harnesses", "agent_memory", "harbor"]
# What each part imports beyond the rock package itself (module -> the package that brings it).
# All of it is in the ``bench`` extra; a part whose needs are missing is skipped with one line.
NEEDS = {
    "envs": {"gem": "gem-llm"},
    "chat": {"openai": "openai"},  # the client inside the sandboxes (the host's Python is mounted there)
    "gym": {"numpy": "numpy", "gymnasium": "gymnasium", "mujoco": "gymnasium[mujoco]"},  # HalfCheetah
    "cluster": {"ray": "ray"},
    "scale_sim": {"psycopg": "psycopg[binary]", "psycopg_pool": "psycopg-pool"},  # and PostgreSQL's server
    "fuzz": {"schemathesis": "schemathesis", "tests.fuzz.runner": "a source checkout (tests/)"},
    "fuzz_open": {"schemathesis": "schemathesis", "tests.fuzz.runner": "a source checkout (tests/)"},
}
INSTALL = "pip install 'rock-sandbox[bench]' (or: uv sync --extra bench)"


def missing(part: str) -> list[str]:
    """The packages ``part`` needs that this interpreter cannot import."""
    out = []
    for module, package in NEEDS.get(part, {}).items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            out.append(package)
    return out


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
    parser.add_argument("--quick", action="store_true", help="fewer iterations (~13 minutes on a 2-core VM)")
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
    unknown = [p for p in parts if p not in PARTS + FULL_ONLY]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS + FULL_ONLY)}")
    broken = []
    for part in parts:
        lacking = missing(part)
        if lacking:
            print(f"[bench] skipping part {part}: needs {', '.join(lacking)}; {INSTALL}", file=sys.stderr)
            continue
        ctx.progress(f"== {part} ==")
        try:
            module = importlib.import_module(f"bench.{part}")
            reason = module.unavailable() if hasattr(module, "unavailable") else None
            if reason:  # a program it needs, not a package
                print(f"[bench] skipping part {part}: {reason}", file=sys.stderr)
                continue
            run, loop = _runner(getattr(module, "LOOP", "asyncio"))
            records = run(module.run(ctx))
        except ModuleNotFoundError as exc:  # an import NEEDS does not list yet: skipped, said so
            print(f"[bench] skipping part {part}: needs {exc.name}; {INSTALL}", file=sys.stderr)
            continue
        except Exception:  # noqa: BLE001 - one broken part must not end the others; the exit code says it
            traceback.print_exc()
            print(f"[bench] part {part} failed (above); the other parts go on", file=sys.stderr)
            broken.append(part)
            continue
        for r in records:
            r.setdefault("event_loop", loop)
        ctx.records.extend(records)
        write_json(ctx.records, args.out)  # keep what we have if a later part breaks
    print_table(ctx.records)
    write_json(ctx.records, args.out)
    print(f"\nwrote {len(ctx.records)} records to {args.out}")
    for picture in draw(ctx.records, args.out):
        print(f"drew {picture}")
    if broken:
        print(f"[bench] failed parts: {', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
