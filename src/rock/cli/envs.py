"""``rock envs``: the env catalog (every id with its availability) and user env registration.

Asks the running admin (which probes inside an env sandbox); with no admin answering, or with
``--local``, the probe runs here in a child process under the host interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx

from rock.client.config import ClientConfig
from rock.client.envelope import raise_for
from rock.client.pools import sync_client

from rock.cli import admin_commands
from rock.cli.output import Out
from rock.envs.catalog import Catalog, UserEnv

GEM = "/apis/v1/envs/gem"


def add_parser(sub) -> None:
    """Register ``rock envs`` (list, register, unregister) on the ``rock`` parser ``sub``."""
    s = admin_commands(sub, "envs", "envs (GEM, gym:): which ids exist and can run here; register your own")

    ls = s.add_parser("list", help="every env id with its availability (and why not)")
    ls.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    ls.add_argument("--available", action="store_true", help="only the ids that can run here")
    ls.add_argument("--family", help="only ids of this family (game, rg, math, gym, user, ...)")
    ls.add_argument("--quick", action="store_true", help="do not construct envs (misses failures inside gem)")
    ls.add_argument("--local", action="store_true", help="probe here even if an admin is running")
    ls.set_defaults(func=cmd_list)

    reg = s.add_parser("register", help="register an env class under an id")
    reg.add_argument("id")
    reg.add_argument("entry_point", help="module:Class")
    reg.add_argument("--package", action="append", default=[], help="pip requirement installed in its sandbox")
    reg.add_argument("--image", help="image of its sandboxes")
    reg.add_argument("--python", help="interpreter inside the sandbox (default: the host's)")
    reg.add_argument("--sys-path", action="append", default=[], help="folder inside the sandbox to import from")
    reg.add_argument("--kwargs", default="{}", help="constructor defaults as JSON")
    reg.add_argument("--replace", action="store_true")
    reg.add_argument("--local", action="store_true", help="write the registry here even if an admin is running")
    reg.set_defaults(func=cmd_register)

    un = s.add_parser("unregister", help="remove a registered env id")
    un.add_argument("id")
    un.add_argument("--local", action="store_true")
    un.set_defaults(func=cmd_unregister)


def _local_catalog() -> Catalog:
    from rock.config import Settings

    settings = Settings.load()
    return Catalog(settings.state_dir, settings.host_python)


def _admin(method: str, url: str, token: str | None, path: str, **kw) -> dict | None:
    """The admin's answer, or None when no admin answers at ``url``."""
    try:
        with sync_client(ClientConfig(url.rstrip("/"), token), GEM, timeout=900) as client:
            response = client.request(method, path, **kw)
    except httpx.TransportError:
        return None
    if response.status_code >= 400:
        raise_for(response.status_code, response.content)
    return response.json()


def envs_list(url: str | None = None, token: str | None = None, local: bool = False, deep: bool = True) -> list[dict]:
    """Every env id with ``available`` and ``reason``: from the admin at ``url``, else probed here."""
    if not local:
        reply = _admin("GET", url or "http://127.0.0.1:8080", token, "/catalog", params={"deep": deep})
        if reply is not None:
            return reply["envs"]
    entries = asyncio.run(_local_catalog().entries(deep=deep))
    return [e.model_dump() for e in entries]


def cmd_list(args, out: Out) -> int:
    """``rock envs list``: every env id with its availability and, when it cannot run here, why."""
    if out.tty and not out.as_json:
        with out.console.status("probing the env catalog (constructs each env once, then cached) ..."):
            envs = envs_list(args.url, args.token, args.local, deep=not args.quick)
    else:
        envs = envs_list(args.url, args.token, args.local, deep=not args.quick)
    if args.available:
        envs = [e for e in envs if e["available"]]
    if args.family:
        envs = [e for e in envs if e["family"] == args.family]
    if out.as_json:
        out.json(envs)
        return 0
    rows = [{"id": e["id"], "available": "yes" if e["available"] else "no", "reason": e.get("reason") or ""}
            for e in envs]
    out.rows(rows, ["id", "available", "reason"], title="envs")
    if not args.available:
        n = sum(1 for e in envs if e["available"])
        print(f"{n} of {len(envs)} env ids can run here")
    return 0


def cmd_register(args, out: Out) -> int:
    """``rock envs register``: register an env class under an id (on the running admin, or here with
    ``--local``)."""
    env = UserEnv(id=args.id, entry_point=args.entry_point, packages=args.package, image=args.image,
                  python=args.python, sys_path=args.sys_path, kwargs=json.loads(args.kwargs))
    reply = None
    if not args.local:
        reply = _admin("POST", args.url, args.token, "/register", params={"replace": args.replace},
                       content=env.model_dump_json())
    if reply is None:
        reply = asyncio.run(_local_catalog().register(env, replace=args.replace)).model_dump()
    out.record(reply, lines=[f"registered {reply['id']} -> {reply['entry_point']}"])
    return 0


def cmd_unregister(args, out: Out) -> int:
    """``rock envs unregister``: remove a registered env id."""
    reply = None if args.local else _admin("POST", args.url, args.token, "/unregister", json={"id": args.id})
    removed = reply["removed"] if reply is not None else _local_catalog().unregister(args.id)
    out.record({"id": args.id, "removed": removed}, lines=[f"{args.id}: {'removed' if removed else 'not registered'}"])
    return 0 if removed else 1
