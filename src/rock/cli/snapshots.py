"""``rock sandbox pause|resume|snapshot|fork|restore ID`` and ``rock snapshot list|delete``: pause,
resume, snapshots and fork for people, through the public SDK (``rock.sdk.sandbox.snapshots``)."""

from __future__ import annotations

import asyncio

from rock.cli import add_admin_options
from rock.cli.output import Out
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig

MODES = ("filesystem", "full")


def add_sandbox_commands(s) -> None:
    """The sandbox-scoped commands, under ``rock sandbox`` (``s``: its subparsers)."""
    for name, text in (("pause", "pause sandboxes: processes kept in memory, no CPU, calls refused until resumed"),
                       ("resume", "resume paused sandboxes where they stopped")):
        p = s.add_parser(name, help=text, description=text)
        p.add_argument("sandbox_ids", nargs="+", metavar="ID")
        p.set_defaults(func=cmd_pause, action=name)

    text = "save a sandbox's state as a snapshot you own; prints its name (start from it: create --snapshot NAME)"
    sn = s.add_parser("snapshot", help=text, description=text)
    sn.add_argument("sandbox_id", metavar="ID")
    sn.add_argument("--name", help="1-53 letters, digits, '_' or '-' (default: a fresh name); with tokens on the "
                    "snapshot's name gets a suffix of your namespace: use the printed one")
    sn.add_argument("--mode", choices=MODES, default="filesystem",
                    help="filesystem: its files (every backend); full: memory and processes too (gvisor)")
    sn.set_defaults(func=cmd_snapshot)

    text = "start COUNT sandboxes from a fresh snapshot of one; prints the children's ids"
    fk = s.add_parser("fork", help=text, description=text)
    fk.add_argument("sandbox_id", metavar="ID")
    fk.add_argument("-n", "--count", type=int, default=1, help="how many children: 1 to 20 (default 1)")
    fk.add_argument("--mode", choices=MODES, default="filesystem",
                    help="filesystem: each child starts on its files; full (gvisor): goes on with its processes")
    fk.set_defaults(func=cmd_fork)

    text = "roll a sandbox back to one of your snapshots in place: the same id, tokens and ports, the snapshot's files"
    rs = s.add_parser("restore", help=text, description=text + " (full: its processes too); running commands end")
    rs.add_argument("sandbox_id", metavar="ID")
    rs.add_argument("snapshot", metavar="SNAPSHOT", help="the snapshot's name, as `rock sandbox snapshot` printed it")
    rs.set_defaults(func=cmd_restore)


def add_parser(sub) -> None:
    """``rock snapshot list|delete``."""
    p = sub.add_parser("snapshot", help="list and delete your snapshots on a running admin")
    add_admin_options(p)
    s = p.add_subparsers(dest="snapshot_cmd", required=True)
    add_list_delete(s, "your snapshots (the token's namespace)", cmd_list,
                    "delete snapshots; sandboxes started from them run on", cmd_delete)


def add_list_delete(s, listed: str, cmd_list, deleted: str, cmd_delete) -> None:
    """The ``list`` and ``delete NAME...`` commands of a token's named objects (``s``: the
    subparsers of ``rock snapshot``, ``rock volume`` or ``rock secret``)."""
    ls = s.add_parser("list", help=listed, description=listed)
    ls.set_defaults(func=cmd_list)
    rm = s.add_parser("delete", help=deleted, description=deleted)
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=cmd_delete)


def delete_named(args, out: Out, within) -> int:
    """Delete each of ``args.names`` through the client ``within(args, use)`` hands to ``use``
    (``Volumes``, ``Secrets``), one client for all, and print what was deleted."""
    async def delete(named):
        for name in args.names:
            await named.delete(name)

    within(args, delete)
    out.record({"deleted": args.names}, lines=[f"deleted {n}" for n in args.names])
    return 0


def _client(args, sandbox_id: str | None = None) -> Sandbox:
    sandbox = Sandbox(SandboxConfig(base_url=args.url, token=args.token,
                                    extra_headers=getattr(args, "extra_headers", {})))
    sandbox._context.sandbox_id = sandbox_id  # no status read: the admin answers 404 for an unknown id itself
    return sandbox


def _with(args, sandbox_id, use):
    async def go():
        sandbox = _client(args, sandbox_id)
        try:
            return await use(sandbox)
        finally:
            await sandbox.aclose()

    return asyncio.run(go())


def cmd_pause(args, out: Out) -> int:
    """``rock sandbox pause`` / ``resume``: freeze or thaw each named sandbox's processes (memory kept)."""
    done = []
    for sandbox_id in args.sandbox_ids:
        _with(args, sandbox_id, lambda s: getattr(s, args.action)())
        done.append(sandbox_id)
    past = {"pause": "paused", "resume": "resumed"}[args.action]
    out.record({past: done}, lines=[f"{past} {s}" for s in done])
    return 0


def cmd_snapshot(args, out: Out) -> int:
    """``rock sandbox snapshot``: take a snapshot of a sandbox (filesystem, or full on gVisor) and print
    it."""
    snap = _with(args, args.sandbox_id, lambda s: s.snapshot(name=args.name, mode=args.mode))
    out.record(snap.model_dump(), lines=[snap.name] if not out.tty else [
        f"snapshot {snap.name} of {args.sandbox_id} ({snap.mode}, {snap.backend}); "
        f"start from it: rock sandbox create --snapshot {snap.name}"])
    return 0


def cmd_fork(args, out: Out) -> int:
    """``rock sandbox fork``: n new running sandboxes from a fresh snapshot of one."""
    async def fork(sandbox: Sandbox):
        children = await sandbox.fork(args.count, mode=args.mode)
        for child in children:
            await child.aclose()
        return [child.sandbox_id for child in children]

    ids = _with(args, args.sandbox_id, fork)
    out.record({"sandboxes": ids}, lines=ids)
    return 0


def cmd_restore(args, out: Out) -> int:
    """``rock sandbox restore``: roll a sandbox back to a snapshot in place (same id, tokens and ports)."""
    _with(args, args.sandbox_id, lambda s: s.restore(args.snapshot))
    out.record({"restored": args.sandbox_id, "snapshot": args.snapshot},
               lines=[f"restored {args.sandbox_id} to {args.snapshot}"])
    return 0


def cmd_list(args, out: Out) -> int:
    """``rock snapshot list``: the token's snapshots."""
    snaps = _with(args, None, lambda s: s.list_snapshots())
    rows = [{"name": s.name, "mode": s.mode, "backend": s.backend, "source": s.source, "image": s.image,
             "size": s.size_bytes, "created": s.created_at} for s in snaps]
    out.rows([s.model_dump() for s in snaps] if out.as_json else rows,
             ["name", "mode", "backend", "source", "image", "size", "created"], title="snapshots")
    return 0


def cmd_delete(args, out: Out) -> int:
    """``rock snapshot delete``: delete snapshots by name."""
    for name in args.names:
        _with(args, None, lambda s: s.delete_snapshot(name))
    out.record({"deleted": args.names}, lines=[f"deleted {n}" for n in args.names])
    return 0
