"""Who serves a sandbox's socket: the process at the far end must be inside that sandbox."""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING

from rock.errors import AgentGone

if TYPE_CHECKING:
    from rock.runtime.base import RuntimeHandle


def check_peer(sock: socket.socket, handle: "RuntimeHandle") -> None:
    """The process at the far end of a socket under a sandbox's run folder must be inside that
    sandbox (its cgroup). The folder is the sandbox's to write: its root may have put a link to a
    host socket (the engine's, another service's) where the agent's was, and a connect follows it."""
    if handle.backend not in ("docker", "bwrap", "gvisor"):
        return  # the local backend isolates nothing
    pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            paths = [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        paths = []
    if handle.backend == "docker":
        inside = any(handle.runtime_id in p for p in paths)
    else:
        inside = any(p == "/" + handle.runtime_id or p.startswith("/" + handle.runtime_id + "/") for p in paths)
    if not inside:
        raise AgentGone(f"the socket of sandbox {handle.sandbox_id} is served by a process outside it (pid {pid}): "
                        "its run folder was tampered with; not connecting")
