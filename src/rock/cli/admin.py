"""``rock admin start|stop|status``: the admin as a background process with a pid file and a
log file in the state directory (or in the foreground with ``--foreground``)."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

from rock.cli.output import Out
from rock.cli.statefiles import info_path, log_path, pid_path, process_name
from rock.config import BackendName, Settings
from rock.errors import BadRequest, RockError


def add_parser(sub) -> None:
    """Register ``rock admin`` (start, stop, status) on the ``rock`` parser ``sub``."""
    p = sub.add_parser("admin", help="run the admin service (API server with the worker embedded)")
    s = p.add_subparsers(dest="admin_cmd", required=True)
    start = s.add_parser("start", help="start the admin (in the background unless --foreground)")
    start.add_argument("--host", help="address to bind (default 127.0.0.1; others need API tokens)")
    start.add_argument("--port", type=int, help="port (default 8080)")
    start.add_argument("--backend", choices=list(typing.get_args(BackendName)), help="runtime backend")
    start.add_argument("--state-dir", help="where records, sandboxes, pid and log files live")
    start.add_argument("--role", choices=["admin", "proxy"], help="admin: everything; proxy: data plane only")
    start.add_argument("--env", help="read ROCK's config rock-conf/rock-ENV.yml (its sections that apply here)")
    start.add_argument("--cluster", help="place sandboxes on a Ray cluster's node workers: its address, or auto")
    start.add_argument("--store-url", help="shared state for several admins/proxies: postgresql://… (default SQLite)")
    start.add_argument("--placement", choices=["spread", "pack"], help="cluster placement (default spread)")
    start.add_argument("--overcommit", type=float, help="cpus and memory promised per node, times what it has")
    start.add_argument("--set", action="append", dest="sets", metavar="SECTION.KEY=VALUE",
                       help="a setting of a section (envs, training, chat, e2b), e.g. --set envs.envs_per_sandbox=8 "
                            "or --set 'e2b.templates={\"py\": \"python:3.12\"}' (JSON values; repeatable; wins over "
                            "the config file and the section's variables)")
    start.add_argument("--foreground", action="store_true", help="stay in the foreground (containers, debugging)")
    start.add_argument("--log-level", default=os.environ.get("ROCK_LOGGING_LEVEL", "info").lower())
    start.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    start.add_argument("--timeout", type=float, default=120, help="seconds to wait for the admin to be ready")
    start.set_defaults(func=cmd_start)
    for name, fn, text in (("stop", cmd_stop, "stop the background admin and the proxies beside it"),
                           ("status", cmd_status, "show what runs, where, with which backend")):
        q = s.add_parser(name, help=text)
        q.add_argument("--state-dir")
        q.add_argument("--env", help="the ROCK config env the admin was started with")
        q.add_argument("--role", choices=["admin", "proxy"], help="only the admin, or only the proxies "
                                                                   "(default: stop all; status of the admin)")
        q.add_argument("--port", type=int, help="only the admin or proxy on this port")
        q.set_defaults(func=fn)
    s.choices["stop"].add_argument("--timeout", type=float, default=30)


def settings_from(args) -> Settings:
    """The admin's settings as the command line, the ``--env`` YAML, the environment and the config file
    give them (flags win); a value no setting takes is a ``BadRequest`` naming it."""
    try:
        return Settings.load(env=getattr(args, "env", None), sets=getattr(args, "sets", None),
                             host=getattr(args, "host", None), port=getattr(args, "port", None),
                             backend=getattr(args, "backend", None), state_dir=getattr(args, "state_dir", None),
                             role=getattr(args, "role", None), cluster=getattr(args, "cluster", None),
                             store_url=getattr(args, "store_url", None), placement=getattr(args, "placement", None),
                             overcommit=getattr(args, "overcommit", None))
    except ValueError as exc:  # pydantic's ValidationError included: which setting, what is wrong
        raise BadRequest(f"the admin's settings: {exc}") from None


def _running_pid(settings: Settings) -> int | None:
    return _live_pid(pid_path(settings))


def _live_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # The pid must still be our admin (pids get reused): its command line says so (`rock admin
    # start`, `python -m rock.cli.main admin ...`, or ROCK's `admin` script).
    ours = any(b"rock" in part for part in cmdline) and any(b"admin" in part for part in cmdline)
    return pid if ours or any(part.endswith(b"/admin") for part in cmdline[:2]) else None


def cmd_start(args, out: Out) -> int:
    """``rock admin start``: start the admin (in the background unless ``--foreground``); 0 once it
    answers."""
    settings = settings_from(args)
    if args.foreground:
        from rock.cli.server import serve  # the app and its server: only for the process that serves

        return serve(settings, ready_fd=args.ready_fd, log_level=args.log_level)
    pid = _running_pid(settings)
    if pid is not None:
        what = "an admin" if settings.role == "admin" else f"a proxy on port {settings.port}"
        raise RockError(f"{what} already runs from {settings.state_dir} (pid {pid}); `rock admin stop` first"
                        + (" (a proxy beside it: --role proxy --port N)" if settings.role == "admin" else ""))
    from rock.admin.auth import check_bind

    check_bind(settings.host, settings.tokens)  # fail here, not silently in the background
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "rock.cli.main", "admin", "start", "--foreground", "--ready-fd", str(write_fd),
            "--host", settings.host, "--port", str(settings.port), "--backend", settings.backend,
            "--state-dir", str(settings.state_dir), "--role", settings.role, "--log-level", args.log_level,
            "--placement", settings.placement, "--overcommit", str(settings.overcommit)]
    for flag, value in (("--cluster", settings.cluster), ("--store-url", settings.store_url), ("--env", args.env)):
        if value:
            argv += [flag, value]
    for item in args.sets or ():
        argv += ["--set", item]
    with open(log_path(settings), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
                                start_new_session=True, close_fds=True)
    os.close(write_fd)
    info = _wait_ready(read_fd, args.timeout)
    if info is None:
        proc.poll()
        tail = _tail(log_path(settings))
        if proc.returncode is None:
            proc.terminate()
        raise RockError(f"the admin did not start (log {log_path(settings)}):\n{tail}")
    out.record(info, title="rock admin started", lines=[
        f"listening on {info['url']}  (backend {info['backend']}, role {info['role']}, pid {info['pid']})",
        f"state dir {info['state_dir']}, log {info['log_file']}"])
    return 0


def _wait_ready(fd: int, timeout: float) -> dict | None:
    """Block on the child's ready pipe: a line when it serves, EOF if it died first."""
    deadline, buf = time.monotonic() + timeout, b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
    finally:
        os.close(fd)
    return json.loads(buf.split(b"\n", 1)[0])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _selected(args, settings: Settings) -> list[tuple[str, int]]:
    """(name, pid) of the running processes of this state dir that ``--role``/``--port`` select:
    proxies first (they use the admin's sandboxes), the admin last."""
    state = Path(settings.state_dir)
    names = [] if args.role == "admin" else sorted(p.stem for p in state.glob("proxy-*.pid"))
    if args.port is not None:
        names = [n for n in names if n == process_name("proxy", args.port)]
    if args.role != "proxy" and (args.port is None or _port_of(state / "admin.json") == args.port):
        names.append("admin")
    return [(name, pid) for name in names if (pid := _live_pid(state / f"{name}.pid")) is not None]


def _port_of(info: Path) -> int | None:
    try:
        return int(json.loads(info.read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        # Wait on the pidfd: readable exactly when the process exits (no polling).
        if not select.select([pidfd], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            select.select([pidfd], [], [], 10)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def cmd_stop(args, out: Out) -> int:
    """``rock admin stop``: stop the admin (or proxy) of this state dir, by the pid it wrote."""
    settings = settings_from(args)
    running = _selected(args, settings)
    if not running:
        what = {"admin": "admin", "proxy": "proxy"}.get(args.role, "admin or proxy")
        out.record({"stopped": False}, lines=[f"no {what} runs from {settings.state_dir}"])
        return 0
    for name, pid in running:
        _stop_pid(pid, args.timeout)
    stopped = [{"name": name, "pid": pid} for name, pid in running]
    out.record({"stopped": True, "pid": running[-1][1], "processes": stopped},
               lines=[f"{name} (pid {pid}) stopped" for name, pid in running] + ["sandboxes keep running"])
    return 0


def cmd_status(args, out: Out) -> int:
    """``rock admin status``: whether the admin runs, its health and the effective settings (tokens
    counted, never shown)."""
    if args.role == "proxy" and args.port is None:
        raise RockError("rock admin status --role proxy needs --port (which proxy)")
    settings = settings_from(args)
    pid = _running_pid(settings)
    try:
        info = json.loads(info_path(settings).read_text()) if pid else {}
    except (OSError, ValueError):
        info = {}
    health = None
    if pid and info:
        import httpx

        from rock.client.config import ClientConfig
        from rock.client.pools import sync_client

        try:
            with sync_client(ClientConfig(str(info["url"]).rstrip("/")), timeout=5) as client:
                health = client.get("/health").json().get("result")
        except (httpx.HTTPError, ValueError):
            health = None
    effective = settings.model_dump(mode="json", exclude={"tokens"}) | {"tokens": f"{len(settings.tokens)} configured"}
    proxies = [name for name, _ in _selected(argparse.Namespace(role="proxy", port=None), settings)]
    data = {"running": pid is not None, "pid": pid, **info, "health": health, "settings": effective,
            "proxies": proxies}
    if pid is None:
        what = "admin" if settings.role == "admin" else f"proxy on port {settings.port}"
        lines = [f"no {what} runs from {settings.state_dir}"]
    else:
        lines = [f"{settings.role} pid {pid} listening on {info.get('url')} (backend {info.get('backend')}, "
                 f"role {info.get('role')})",
                 f"serving: {'yes' if health else 'NO ANSWER'}"
                 + (f", {health['sandboxes']} running sandboxes, up {health['uptime_seconds']:.0f}s" if health else ""),
                 f"log {info.get('log_file')}"]
    if proxies and settings.role == "admin":
        lines.append(f"beside it: {', '.join(proxies)} (rock admin status --role proxy --port N)")
    out.record(data, title="rock admin", lines=lines, table=effective)
    return 0 if pid is not None else 3
