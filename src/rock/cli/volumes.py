"""``rock volume create|list|delete``: volumes for people, through the public SDK
(``rock.sdk.sandbox.volumes``); a sandbox mounts one with ``rock sandbox create --volume``."""

from __future__ import annotations

from rock.cli import add_admin_options
from rock.cli.output import Out
from rock.cli.snapshots import _with as snapshot_client
from rock.cli.snapshots import add_list_delete, delete_named


def add_parser(sub) -> None:
    """``rock volume create|list|delete``."""
    p = sub.add_parser("volume", help="create, list and delete your volumes on a running admin")
    add_admin_options(p)
    s = p.add_subparsers(dest="volume_cmd", required=True)
    text = "create a volume: a directory with a size limit that outlives sandboxes and mounts into yours"
    mk = s.add_parser("create", help=text, description=text)
    mk.add_argument("name", metavar="NAME", help="1-63 letters, digits, '_', '.' or '-'")
    mk.add_argument("--size", help="its size limit, e.g. 100M or 2G (1 MiB to 64 GiB; default 1G)")
    mk.set_defaults(func=cmd_create)
    add_list_delete(s, "your volumes (the token's namespace)", cmd_list,
                    "delete volumes and their files (refused while a running sandbox mounts one)", cmd_delete)


def _with(args, use):
    """``use(volumes)`` on the admin and token of the command's options (``rock.cli.snapshots``' client)."""
    return snapshot_client(args, None, lambda sandbox: use(sandbox.volumes))


def cmd_create(args, out: Out) -> int:
    """``rock volume create``: create a volume and print it."""
    vol = _with(args, lambda v: v.create(args.name, args.size))
    out.record(vol.model_dump(), lines=[f"volume {vol.name} ({vol.size_bytes} bytes)"])
    return 0


def cmd_list(args, out: Out) -> int:
    """``rock volume list``: the token's volumes."""
    vols = _with(args, lambda v: v.list())
    out.rows([v.model_dump() for v in vols], ["name", "volume_id", "size_bytes", "created_at"], title="volumes")
    return 0


def cmd_delete(args, out: Out) -> int:
    """``rock volume delete``: delete volumes by name or id."""
    return delete_named(args, out, _with)
