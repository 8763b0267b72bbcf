"""The ``rock`` command. Options shared by the sub-commands that talk to a running admin live here."""

import logging
import os

DEFAULT_URL = "http://127.0.0.1:8080"


def add_admin_options(parser) -> None:
    """``--url`` and ``--token`` for commands that call a running admin. When not given: the global
    ``--base-url`` / ``--auth-token``, then ``.rock/config.ini``, then $ROCK_BASE_URL / $ROCK_TOKEN."""
    parser.add_argument("--url", help="admin URL")
    parser.add_argument("--token", help="API token")


def admin_commands(sub, name: str, help: str):
    """``rock <name> ...``: a group of subcommands that call a running admin (``--url`` and
    ``--token`` on the group); returns the group's subparsers, chosen one in ``args.<name>_cmd``."""
    group = sub.add_parser(name, help=help)
    add_admin_options(group)
    return group.add_subparsers(dest=f"{name}_cmd", required=True)


def resolve_admin_options(args, ini) -> None:
    """Fill ``args.url`` / ``args.token`` / ``args.extra_headers`` by precedence (see add_admin_options)."""
    if not hasattr(args, "url"):
        return
    for source, value in (("--url", args.url), ("--base-url", getattr(args, "base_url", None)),
                          (str(ini.path), ini.base_url), ("$ROCK_BASE_URL", os.environ.get("ROCK_BASE_URL")),
                          ("the default", DEFAULT_URL)):
        if value:
            args.url = value
            logging.getLogger("rock.cli").info("admin %s (from %s)", value, source)
            break
    args.token = args.token or getattr(args, "auth_token", None) or ini.auth_token or os.environ.get("ROCK_TOKEN")
    args.extra_headers = ini.extra_headers
