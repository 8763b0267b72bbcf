"""``rock cluster status``: the nodes an admin places sandboxes on, with resources, load and
sandboxes per node; ``rock worker start|stop``: a node's worker (a Ray actor) on a Ray cluster."""

from __future__ import annotations

import signal
import threading
import typing

import httpx

from rock.cli import admin_commands
from rock.client.config import ClientConfig
from rock.client.pools import sync_client
from rock.cli.output import Out
from rock.config import BackendName, Settings
from rock.errors import RockError

GIB = 1 << 30


def add_parser(sub) -> None:
    """Register ``rock cluster`` (status) and ``rock worker`` (start, stop) on the ``rock`` parser ``sub``."""
    s = admin_commands(sub, "cluster", "the nodes of a running admin's cluster")
    s.add_parser("status", help="nodes, resources, load and sandboxes per node").set_defaults(func=cmd_status)

    w = sub.add_parser("worker", help="run this node's worker on a Ray cluster")
    ws = w.add_subparsers(dest="worker_cmd", required=True)
    start = ws.add_parser("start", help="start the worker actor of this Ray node (or of --node-id)")
    start.add_argument("--address", default="auto", help="the Ray cluster (host:port of its head, or auto)")
    start.add_argument("--name", help="the node's stable name (default: the host name)")
    start.add_argument("--node-id", help="the Ray node to start it on (default: the one this process joins)")
    start.add_argument("--labels", default="", help="node labels, e.g. zone=a,accelerator_type=A100")
    start.add_argument("--backend", choices=list(typing.get_args(BackendName)))
    start.add_argument("--state-dir")
    start.add_argument("--pool-size", type=int)
    start.add_argument("--overcommit", type=float)
    start.add_argument("--relay-port", type=int, help="port for the data path (default: any free one)")
    start.add_argument("--block", action="store_true",
                       help="stay in the foreground while the worker lives (a container's main process)")
    start.set_defaults(func=cmd_worker_start)
    stop = ws.add_parser("stop", help="stop a node's worker (its sandboxes keep running unless --stop-sandboxes)")
    stop.add_argument("--address", default="auto")
    stop.add_argument("--name", help="the node's name (default: the host name)")
    stop.add_argument("--stop-sandboxes", action="store_true")
    stop.set_defaults(func=cmd_worker_stop)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def cmd_status(args, out: Out) -> int:
    """``rock cluster status``: each node's resources, load and sandboxes, as the admin reports them."""
    admin = ClientConfig(args.url.rstrip("/"), args.token, dict(getattr(args, "extra_headers", None) or {}))
    try:
        with sync_client(admin, timeout=15) as client:
            reply = client.get("/apis/envs/sandbox/v1/cluster/status")
    except httpx.HTTPError as exc:
        raise RockError(f"cannot reach the admin at {args.url}: {exc}") from None
    body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
    if reply.status_code != 200:
        raise RockError(f"the admin answered {reply.status_code}: {body.get('message') or reply.text[:200]}")
    result = body["result"]
    if out.as_json:
        out.json(result)
        return 0
    rows = []
    for n in result["nodes"]:
        cap, res = n["capacity"], n["reserved"]
        rows.append({
            "node": n["name"], "state": "live" if n["live"] else f"LOST: {n.get('lost_reason')}",
            "backend": n["backend"], "cpus used/total": f"{res['cpus']:g}/{cap['cpus']:g}",
            "memory GiB used/total": f"{_gib(res['memory_bytes'])}/{_gib(cap['memory_bytes'])}",
            "gpus used/total": f"{res['gpus']}/{cap['gpus']}", "load": f"{n['loadavg']:.2f}",
            "sandboxes": n["sandboxes"],
            "records": ", ".join(f"{k} {v}" for k, v in sorted(n["sandbox_states"].items())) or "-",
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(n["labels"].items())) or "-",
        })
    out.rows(rows, list(rows[0]) if rows else ["node"],
             title=f"{result['mode']} ({result['placement']}, overcommit {result['overcommit']:g})")
    return 0


def _connect(address: str) -> None:
    import logging

    import ray

    from rock.cluster.node import NAMESPACE

    ray.init(address=None if address == "local" else address, namespace=NAMESPACE, logging_level=logging.WARNING,
             log_to_driver=False)


def cmd_worker_start(args, out: Out) -> int:
    """``rock worker start``: start this Ray node's worker actor (one per node; it owns the node's
    sandboxes)."""
    labels = dict(item.split("=", 1) for item in args.labels.split(",") if "=" in item)
    settings = Settings.load(backend=args.backend, state_dir=args.state_dir, pool_size=args.pool_size,
                             overcommit=args.overcommit, relay_port=args.relay_port,
                             **({"node_labels": labels} if labels else {}))
    _connect(args.address)
    import ray

    from rock.cluster.node import ACTOR_PREFIX, NAMESPACE, start_node

    info = start_node(settings, name=args.name, node_id=args.node_id)
    out.record(info, lines=[f"worker {info['name']} ready on {info['host_name']} ({info['backend']}): "
                            f"{info['capacity']['cpus']:g} cpus, {_gib(info['capacity']['memory_bytes'])} GiB, "
                            f"{info['capacity']['gpus']} GPUs; data path {info['relay']}"])
    if not args.block:
        return 0
    # A container's main process: live as long as the worker does, stop it on SIGTERM.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    actor = ray.get_actor(ACTOR_PREFIX + info["name"], namespace=NAMESPACE)
    while not stopping.wait(5):
        try:
            ray.get(actor.info.remote(), timeout=30)
        except Exception as exc:  # noqa: BLE001
            raise RockError(f"worker {info['name']} is gone: {exc}") from None
    ray.get(actor.shutdown.remote(False), timeout=60)
    ray.kill(actor)
    return 0


def cmd_worker_stop(args, out: Out) -> int:
    """``rock worker stop``: stop a node's worker; its sandboxes keep running unless ``--stop-sandboxes``."""
    import socket

    _connect(args.address)
    import ray

    from rock.cluster.node import ACTOR_PREFIX, NAMESPACE

    name = args.name or socket.gethostname()
    try:
        actor = ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE)
    except ValueError:
        raise RockError(f"no worker named {name!r} runs on this Ray cluster") from None
    ray.get(actor.shutdown.remote(args.stop_sandboxes), timeout=120)
    ray.kill(actor)
    out.record({"stopped": name}, lines=[f"worker {name} stopped"
                                         + ("" if args.stop_sandboxes else "; its sandboxes keep running")])
    return 0
