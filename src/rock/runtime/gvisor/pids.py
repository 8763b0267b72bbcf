"""A gVisor sandbox's process limit, kept by its own kernel (the sentry's pids cgroup).

Why not the host's pids cgroup, as on bwrap and docker: under gVisor that cgroup holds the
sentry and its gofer, and counts their threads (about 470 for an idle sandbox here, about 7
more for each process inside), not the sandbox's processes; a limit of 64 there kills the
sandbox at boot, and any number there means nothing inside. Why not RLIMIT_NPROC, which the
sentry enforces: it counts per user, and the sandbox's root has CAP_SETUID, so every uid it
switches to would bring a fresh allowance.

The sentry of runsc 20221219 has a pids controller (pkg/sentry/fsimpl/cgroupfs/pids.go: a
clone over ``pids.max`` fails with EAGAIN, whatever the uid) but runsc never mounts it (it
drops the spec's cgroup mounts; ``--cgroupfs`` mounts memory and cpu only) and a hierarchy
lives only while mounted. So the sandbox's agent, its first process, starts with CAP_SYS_ADMIN
and CAP_SETPCAP (``AGENT_CAPS``), which the sandbox itself never gets: before anything else
runs it mounts the pids hierarchy, makes ``/sandbox`` with the limit
(``agent_boot.PIDS_LIMIT_ENV``), moves itself there (so all that comes later too), leaves a
read-only view at ``/sys/fs/cgroup`` (as Docker shows its cgroups), unmounts the writable one
and gives up both capabilities for good,
checking that it did (``rock_agent.pids``), all before it signals ready. The sandbox's root can
then neither write the limit nor move out (EROFS), nor unmount or mount cgroupfs (no
CAP_SYS_ADMIN); the host reads the group through runsc's control server
(``runsc read-control``), which no mount flag binds. A checkpoint keeps the mount, the group
and the tasks in it, and the limit holds after a restore (measured: 53 of 500 forks under a
limit of 64, in the restored source and in a child); it keeps the limit it was checkpointed
with, as its agent keeps its memory limit.

Until 2026-11 the worker ran the same setup with ``runsc exec`` while the agent booted: a
second Python inside the sandbox, and the longest part of a start (about 250 of 450 ms here).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from rock.runtime.base import RuntimeHandle

GROUP = "/sandbox"  # rock_agent.pids makes it
AGENT_CAPS = ["CAP_SYS_ADMIN", "CAP_SETPCAP"]  # mount(2); dropping a capability from the bounding set

Runsc = Callable[..., Awaitable[str]]  # GvisorRuntime._runsc: (spec, *args, check=...) -> output


async def read(runsc: Runsc, handle: RuntimeHandle) -> tuple[int | None, int | None]:
    """(processes in the sandbox's group, its limit), or (None, None) where it has none or the
    control server cannot find it (a restored sandbox: runsc 20221219 does not restore the
    kernel's registry of hierarchies, so its control server answers "controller not active"
    there): the sentry's own count, threads included, as a host pids cgroup counts them."""
    if handle.spec.pids_limit is None:
        return None, None
    cid = handle.extra["cid"]
    current, limit = await asyncio.gather(*(runsc(handle.spec, "read-control", cid, "pids", GROUP, name, check=False)
                                            for name in ("pids.current", "pids.max")))
    return _number(current), _number(limit)


def _number(said: str) -> int | None:
    said = said.strip()
    return int(said) if said.isdigit() else None
