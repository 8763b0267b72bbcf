"""The ``rock`` command: ``rock admin ...`` runs the service, ``rock sandbox ...`` uses it."""

from __future__ import annotations

import argparse
import logging
import sys

from rock.cli import (
    admin,
    cluster,
    config_ini,
    envs,
    image,
    job,
    resolve_admin_options,
    sandbox,
    secrets,
    snapshots,
    suites,
    tasks,
    volumes,
)
from rock.cli.output import Out
from rock.errors import RockError


def build_parser() -> argparse.ArgumentParser:
    """The ``rock`` command's parser: the global options and every command group's subcommands."""
    parser = argparse.ArgumentParser(prog="rock", description="ROCK: isolated sandboxes and RL environments")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--base-url", help="the admin's URL (over .rock/config.ini and $ROCK_BASE_URL)")
    parser.add_argument("--auth-token", help="API token (over .rock/config.ini and $ROCK_TOKEN)")
    parser.add_argument("--config", help="CLI config file (default: ./.rock/config.ini, then ~/.rock/config.ini)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output: -v warnings, -vv info, -vvv debug (default: errors only)")
    sub = parser.add_subparsers(dest="command", required=True)
    admin.add_parser(sub)
    sandbox.add_parser(sub)
    snapshots.add_parser(sub)
    volumes.add_parser(sub)
    secrets.add_parser(sub)
    image.add_parser(sub)
    job.add_parser(sub)
    suites.add_parser(sub)
    tasks.add_parser(sub)
    cluster.add_parser(sub)
    envs.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``rock`` with ``argv``; the exit status. A ``RockError`` is printed as one line (or JSON) and
    exits 1, never as a traceback; Ctrl-C exits 130."""
    args = build_parser().parse_args(argv)
    out = Out(as_json=args.json)
    levels = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    logging.basicConfig(level=levels[min(args.verbose, 3)], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        resolve_admin_options(args, config_ini.read(args.config))
        return int(args.func(args, out) or 0)
    except RockError as exc:
        out.error(exc.message or type(exc).__name__)
        return 1
    except KeyboardInterrupt:
        return 130


def admin_main(argv: list[str] | None = None) -> int:
    """ROCK's server command ``admin [--env local] [--role admin|proxy] [--port N] ...``: the admin in
    the foreground (Ctrl-C stops it), with the options of ``rock admin start``."""
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print("usage: admin [options of `rock admin start`]: the admin in the foreground; Ctrl-C stops it\n")
    return main(["admin", "start", "--foreground", *args])


if __name__ == "__main__":
    sys.exit(main())
