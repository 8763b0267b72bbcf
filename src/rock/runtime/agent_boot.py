"""How every backend boots the rock agent inside a sandbox: where the sandbox sees it, its run
folder on the host, its command line and its environment.

Inside every sandbox the layout is the same:
    /.rock/lib/rock_agent   the agent package, read-only
    /.rock/run              a host directory, read-write: ``agent.sock`` and the ``ready`` FIFO
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rock.errors import SandboxStartError

if TYPE_CHECKING:  # the interface imports this module's names; these are only annotations here
    from rock.config import Settings
    from rock.runtime.base import SandboxSpec

AGENT_SRC = Path(__file__).resolve().parent.parent / "agent"
SANDBOX_LIB = "/.rock/lib"
SANDBOX_RUN = "/.rock/run"
# What root inside any sandbox may still do: own and chmod files (package managers, tar, the
# agent's chown op), bypass file permissions as root does, drop to another uid/gid (apt's _apt
# user, su), and signal processes of other uids. Not: mount, raw sockets, mknod, tracing other
# users' processes, module loading, or anything else in CAP_SYS_*. Backends add
# NET_BIND_SERVICE only where the sandbox has a network namespace of its own.
SANDBOX_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
SOCKET_NAME = "agent.sock"
READY_NAME = "ready"
# How long a backend waits for the agent's ready line (a first start of an image can be slow).
READY_TIMEOUT = 60.0
# The limit the agent's memory watcher keeps (rock_agent.oom), named only by a backend whose
# kernel has no OOM killer (gvisor); never by the spec's variables: in the local backend's agent
# it would kill host processes, anywhere it would let a sandbox's creator set its own limit.
MEMORY_LIMIT_ENV = "ROCK_AGENT_MEMORY_LIMIT"
# The process limit the agent sets as its first act (rock_agent.pids), named only by gvisor, which
# gives the agent the capabilities for it; never by the spec's variables: they would raise their
# own limit, or have an agent on the host (local) mount cgroups there.
PIDS_LIMIT_ENV = "ROCK_AGENT_PIDS_LIMIT"
AGENT_ONLY_ENV = frozenset({MEMORY_LIMIT_ENV, PIDS_LIMIT_ENV})
# Unix socket paths longer than this cannot be bound or connected to (sun_path is 108 bytes).
MAX_SOCKET_PATH = 107


def prepare_run_dir(sandboxes_dir: Path, sandbox_id: str) -> Path:
    """A fresh ``<sandboxes_dir>/<id>/run`` with the agent's ready FIFO in it (the socket path
    checked for length first: a state dir too deep for a Unix socket fails here, clearly)."""
    run = sandboxes_dir / sandbox_id / "run"
    if len(str(run / SOCKET_NAME)) > MAX_SOCKET_PATH:
        raise SandboxStartError(
            f"agent socket path {run / SOCKET_NAME} is longer than {MAX_SOCKET_PATH} bytes; use a shorter state_dir"
        )
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, mode=0o700)
    os.mkfifo(run / READY_NAME, 0o600)
    return run


def agent_argv(python: str | None = None, lib: str = SANDBOX_LIB, run: str = SANDBOX_RUN) -> list[str]:
    """Command that starts the agent inside a sandbox: the image's python3 if it has one.

    ``lib`` and ``run`` are where the sandbox sees the agent package and the run
    directory; only the local backend, which has no mount namespace, changes them.
    """
    boot = f"{lib}/rock_agent/boot.py"
    args = ["--socket", f"{run}/{SOCKET_NAME}", "--ready", f"{run}/{READY_NAME}"]
    if python:
        return [python, "-I", "-S", boot, *args]
    script = 'command -v python3 >/dev/null 2>&1 && exec python3 -I -S "$0" "$@"; exec "$ROCK_HOST_PYTHON" -I -S "$0" "$@"'
    return ["/bin/sh", "-c", script, boot, *args]


def sandbox_env(settings: "Settings", spec: "SandboxSpec", agent_env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment every backend gives the agent; ``agent_env``: what the backend adds for it (see
    rock.agent.server.harden). The spec's own variables win, but for ``AGENT_ONLY_ENV``."""
    limit = spec.max_file_bytes if spec.max_file_bytes is not None else settings.max_file_bytes
    merge = {"ROCK_AGENT_MERGE_MEMORY": "1", "ROCK_AGENT_MERGE_AFTER": f"{settings.merge_agent_memory_after_s:g}"} \
        if settings.merge_agent_memory else {}
    prewarm = {"ROCK_AGENT_PREWARM": spec.prewarm} if spec.prewarm != "session" else {}
    return {"ROCK_HOST_PYTHON": settings.host_python, "ROCK_SANDBOX_ID": spec.sandbox_id,
            "ROCK_MAX_FILE_BYTES": str(limit), **merge, **prewarm, **(agent_env or {}),
            **{k: v for k, v in spec.env.items() if k not in AGENT_ONLY_ENV}}
