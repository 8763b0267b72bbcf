"""``rock secret create|list|get|delete``: secrets bound to hosts, through the public SDK
(``rock.sdk.sandbox.secrets``); a sandbox uses one with ``rock sandbox create --secret VAR=NAME``."""

from __future__ import annotations

import os
import sys

from rock.cli import add_admin_options
from rock.cli.output import Out
from rock.cli.snapshots import _with as snapshot_client
from rock.cli.snapshots import add_list_delete, delete_named


def add_parser(sub) -> None:
    """``rock secret create|list|get|delete``."""
    p = sub.add_parser("secret", help="register, list and delete your secrets (bound to hosts) on a running admin")
    add_admin_options(p)
    s = p.add_subparsers(dest="secret_cmd", required=True)
    text = ("register a secret: sandboxes started with it hold a placeholder, and the egress relay sends the value "
            "to its hosts only. The value is read from stdin (or --value-env VAR), never from the command line")
    mk = s.add_parser("create", help=text, description=text)
    mk.add_argument("name", metavar="NAME", help="lower-case letters, digits, '_', '.' or '-'")
    mk.add_argument("--host", action="append", default=[], dest="hosts", metavar="HOST",
                    help="a host it may be sent to (api.example.com or *.example.com); repeatable, at least one")
    mk.add_argument("--value-env", metavar="VAR", help="read the value from this environment variable instead of stdin")
    mk.set_defaults(func=cmd_create)
    get = s.add_parser("get", help="one of your secrets (never its value)")
    get.add_argument("name", metavar="NAME")
    get.set_defaults(func=cmd_get)
    add_list_delete(s, "your secrets (never their values)", cmd_list, "delete secrets", cmd_delete)


def _with(args, use):
    return snapshot_client(args, None, lambda sandbox: use(sandbox.secrets))


def cmd_create(args, out: Out) -> int:
    value = os.environ.get(args.value_env, "") if args.value_env else sys.stdin.read().rstrip("\r\n")
    made = _with(args, lambda s: s.create(args.name, value, args.hosts))
    out.record(made.model_dump(), lines=[f"secret {made.name} for {', '.join(made.hosts)}: {made.placeholder}"])
    return 0


def cmd_list(args, out: Out) -> int:
    found = _with(args, lambda s: s.list())
    out.rows([i.model_dump() for i in found], ["name", "hosts", "placeholder"], title="secrets")
    return 0


def cmd_get(args, out: Out) -> int:
    found = _with(args, lambda s: s.get(args.name))
    out.record(found.model_dump(), lines=[f"secret {found.name} for {', '.join(found.hosts)}: {found.placeholder}"])
    return 0


def cmd_delete(args, out: Out) -> int:
    """``rock secret delete``: delete secrets by name."""
    return delete_named(args, out, _with)
