"""``rock sandbox create|list|exec|shell|stop|restart|delete|logs`` (and ``pause|resume|snapshot|fork|restore``,
``rock.cli.snapshots``): sandboxes for people, through the public SDK."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rock.cli import admin_commands
from rock.cli.output import Out
from rock.errors import BadRequest, RockError
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from rock.client.http import Http


def add_parser(sub) -> None:
    """Register ``rock sandbox`` (create, list, exec, egress, stop, logs, shell) on the ``rock`` parser
    ``sub``."""
    s = admin_commands(sub, "sandbox", "create and use sandboxes on a running admin")

    c = s.add_parser("create", help="start a sandbox and print its id")
    c.add_argument("--image", default="python:3.11")
    c.add_argument("--memory", default="1g")
    c.add_argument("--cpus", type=float, default=1)
    c.add_argument("--id", dest="sandbox_id", help="choose the sandbox id (create is idempotent for it)")
    c.add_argument("--ttl", type=int, default=3600, help="stop after this many idle seconds (0: never)")
    c.add_argument("--network", action="store_true", help="give the sandbox network access")
    c.add_argument("--snapshot", help="start from this snapshot (its files, image and limits; --image, --memory and "
                   "--cpus are then not used)")
    c.add_argument("--egress", type=_egress, help=EGRESS_HELP)
    c.add_argument("--secret", action="append", default=[], metavar="VAR=NAME",
                   help="put a placeholder of your secret NAME (rock secret create) in $VAR; the egress relay sends "
                        "the value to the secret's hosts only (needs --egress); repeatable")
    c.add_argument("--volume", action="append", default=[], metavar="NAME:PATH[:ro]",
                   help="mount your volume NAME at PATH (read-only with :ro); repeatable")
    c.set_defaults(func=cmd_create)

    eg = s.add_parser("egress", help="change a running sandbox's egress policy")
    eg.add_argument("sandbox_id")
    eg.add_argument("policy", type=_egress, help=EGRESS_HELP)
    eg.set_defaults(func=cmd_egress)

    ls = s.add_parser("list", help="list sandboxes")
    ls.add_argument("--state", help="only this state (pending, running, paused, stopped, failed, deleted)")
    ls.set_defaults(func=cmd_list)

    e = s.add_parser("exec", help="run a command in a sandbox, streaming its output; exits with its code")
    e.add_argument("sandbox_id")
    e.add_argument("cmd", nargs=argparse_remainder(), help="the command (after --)")
    e.add_argument("--session", help="run in this persistent session (default: a fresh one)")
    e.add_argument("--timeout", type=float)
    e.add_argument("--background", action="store_true", help="start as a background process; print its id")
    e.set_defaults(func=cmd_exec)

    sh = s.add_parser("shell", help="an interactive shell in a sandbox session")
    sh.add_argument("sandbox_id")
    sh.add_argument("--session", default="shell")
    sh.set_defaults(func=cmd_shell)

    for name, text in (("stop", "stop sandboxes (their files are kept for restart)"),
                       ("restart", "start stopped sandboxes again, with their files"),
                       ("delete", "delete sandboxes and their files")):
        st = s.add_parser(name, help=text)
        st.add_argument("sandbox_ids", nargs="+")
        st.set_defaults(func=cmd_stop, action=name)

    lg = s.add_parser("logs", help="a sandbox's lifecycle history, or a background process's output")
    lg.add_argument("sandbox_id")
    lg.add_argument("--proc", help="background process id (from `exec --background`)")
    lg.add_argument("--stderr", action="store_true")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until the process ends")
    lg.set_defaults(func=cmd_logs)

    from rock.cli.snapshots import add_sandbox_commands

    add_sandbox_commands(s)


def argparse_remainder():
    """``argparse.REMAINDER`` (imported late so that building the parser stays cheap): ``exec`` passes the
    rest of the line on."""
    import argparse

    return argparse.REMAINDER


def _config(args, **kw) -> SandboxConfig:
    return SandboxConfig(base_url=args.url, token=args.token, extra_headers=getattr(args, "extra_headers", {}), **kw)


EGRESS_HELP = ("egress policy: none, all, a comma-separated allow list of hosts, '*.' wildcards and CIDRs "
               "(e.g. 'pypi.org,*.pythonhosted.org'), or JSON rules {\"allow\": [...], \"deny\": [...], \"ports\": [...]}")


def _egress(text: str) -> str | dict:
    """A policy as the command line writes it (see EGRESS_HELP)."""
    text = text.strip()
    if text in ("none", "all"):
        return text
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    return {"allow": [part.strip() for part in text.split(",") if part.strip()]}


def _admin(args) -> Http:
    """The admin's sandbox API for calls about sandboxes by id or in bulk (list, stop, delete),
    with the headers a Sandbox of the same options would send."""
    return Http.for_config(_config(args))


async def _attached(args) -> Sandbox:
    sandbox = Sandbox(_config(args))
    await sandbox.attach(args.sandbox_id)
    return sandbox


def _run(coro):
    return asyncio.run(coro)


def _volume_mount(text: str) -> dict:
    name, _, rest = text.partition(":")
    path, _, mode = rest.partition(":")
    if not name or not path or mode not in ("", "ro", "rw"):
        raise BadRequest(f"--volume {text!r}: write NAME:PATH or NAME:PATH:ro")
    return {"name": name, "path": path, "read_only": mode == "ro"}


def cmd_create(args, out: Out) -> int:
    """``rock sandbox create``: start a sandbox and print its id, host and state."""
    config = _config(args, image=args.image, memory=args.memory, cpus=args.cpus, sandbox_id=args.sandbox_id,
                     auto_clear_seconds=args.ttl, network=args.network, snapshot=args.snapshot,
                     egress=args.egress, volumes=[_volume_mount(v) for v in args.volume] or None,
                     secrets=dict(s.split("=", 1) for s in args.secret if "=" in s) or None)

    async def go():
        sandbox = Sandbox(config)
        try:
            if out.tty and not out.as_json:
                with out.console.status(f"starting a sandbox from {args.image} ..."):
                    await sandbox.start()
            else:
                await sandbox.start()
            return await sandbox.get_status()
        finally:
            await sandbox.aclose()

    status = _run(go())
    out.record(status.model_dump(mode="json"), lines=[status.sandbox_id] if not out.tty else [
        f"sandbox {status.sandbox_id} running ({status.backend}, image {status.image})"])
    return 0


def cmd_list(args, out: Out) -> int:
    """``rock sandbox list``: the token's sandboxes with their state, image and resources."""
    async def go():
        http = _admin(args)
        try:
            return await http.get("/sandboxes", {"state": args.state, "page_size": 1000})
        finally:
            await http.aclose()

    items = _run(go())["items"]
    rows = [{"id": i["sandbox_id"], "state": i["lifecycle_state"], "backend": i["backend"], "image": i["image"],
             "created": (i["create_time"] or "")[:19], "last used": (i["last_used_time"] or "")[:19],
             "envs": _envs_summary(i.get("envs") or [])} for i in items]
    out.rows(items if out.as_json else rows, ["id", "state", "backend", "image", "created", "last used", "envs"],
             title="sandboxes")
    return 0


def cmd_exec(args, out: Out) -> int:
    """``rock sandbox exec``: run one command in a sandbox; its output is printed and its exit code
    returned."""
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise RockError("no command given: rock sandbox exec ID -- COMMAND ...")
    command = cmd[0] if len(cmd) == 1 else " ".join(_quote(c) for c in cmd)

    async def go():
        sandbox = await _attached(args)
        try:
            if args.background:
                return await sandbox.start_process(command)
            stream = None if out.as_json else (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
            return await sandbox.arun(command, session=args.session, timeout=args.timeout, on_output=stream)
        finally:
            await sandbox.aclose()

    result = _run(go())
    if args.background:
        out.record(result, lines=[f"started background process {result['proc_id']} (pid {result['pid']}); "
                                  f"rock sandbox logs {args.sandbox_id} --proc {result['proc_id']} -f"])
        return 0
    if out.as_json:
        out.json(result.model_dump())
    elif result.failure_reason and result.status != "completed":
        print(f"\n[{result.failure_reason}]", file=sys.stderr)
    return result.exit_code if isinstance(result.exit_code, int) else 1


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def cmd_egress(args, out: Out) -> int:
    """``rock sandbox egress``: give a running sandbox a new egress policy and print the rules in force."""
    async def go():
        sandbox = await _attached(args)
        try:
            return await sandbox.update_egress(args.policy)
        finally:
            await sandbox.aclose()

    rules = _run(go())
    out.record(rules, lines=[f"{args.sandbox_id}: egress {rules}"])
    return 0


def cmd_stop(args, out: Out) -> int:
    """stop, restart or delete (``args.action``) each sandbox."""
    async def go():
        done = []
        http = _admin(args)
        try:
            for sandbox_id in args.sandbox_ids:
                await http.post(f"/{args.action}", {"sandbox_id": sandbox_id})
                done.append(sandbox_id)
        finally:
            await http.aclose()
        return done

    past = {"stop": "stopped", "restart": "restarted", "delete": "deleted"}[args.action]
    handled = _run(go())
    out.record({past: handled}, lines=[f"{past} {s}" for s in handled])
    return 0


def cmd_logs(args, out: Out) -> int:
    """``rock sandbox logs``: a sandbox's state history, or with ``--proc`` a background process's output
    (``--follow`` keeps reading while it runs)."""
    async def go():
        sandbox = await _attached(args)
        try:
            if not args.proc:
                return (await sandbox.get_status(include_all_states=True)).state_history
            stream, offset = ("stderr" if args.stderr else "stdout"), 0
            while True:
                data, offset, running = await sandbox.process_output(args.proc, stream, offset)
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
                if not args.follow or (not running and not data):
                    return None
                if not data:
                    # A person watching a log: a short pause between reads, like `tail -f`.
                    await asyncio.sleep(0.2)
        finally:
            await sandbox.aclose()

    history = _run(go())
    if history is not None:
        rows = [{"time": h.timestamp[:23], "from": h.from_state, "to": h.to_state, "event": h.event}
                for h in history]
        out.rows(rows, ["time", "from", "to", "event"], title=f"history of {args.sandbox_id}")
    return 0


def cmd_shell(args, out: Out) -> int:
    """``rock sandbox shell``: an interactive shell in a sandbox's session, streamed over the admin's
    WebSocket."""
    from rock.cli.shell import run_shell

    async def go():
        sandbox = await _attached(args)
        try:
            return await run_shell(sandbox, args.session)
        finally:
            await sandbox.aclose()

    return _run(go())


def _envs_summary(envs: list[dict]) -> str:
    """``3 x game:Sokoban-v0-easy`` style: which envs a sandbox hosts, in one cell."""
    counts: dict[str, int] = {}
    for env in envs:
        counts[env["env_id"]] = counts.get(env["env_id"], 0) + 1
    return ", ".join(f"{n} x {env_id}" for env_id, n in sorted(counts.items()))
