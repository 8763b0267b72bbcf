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
lives only while mounted. So while the agent boots, and before the sandbox is handed out,
``runsc exec`` runs a setup inside with CAP_SYS_ADMIN that the sandbox itself lacks (``SETUP``):
it mounts the pids hierarchy on a scratch directory, makes ``/sandbox`` with the limit, moves
every process there (the agent and what it runs, so all that comes later too), and leaves a
read-only view at ``/sys/fs/cgroup`` (as Docker shows its cgroups) before unmounting the
writable one. The sandbox's root can then neither write the limit nor move out (EROFS), nor
unmount or mount cgroupfs (no CAP_SYS_ADMIN); the host reads and writes the group through
runsc's control server (``runsc read-control``/``write-control``), which no mount flag binds.
A checkpoint keeps the mount, the group and the tasks in it, and the limit holds after a
restore (measured: 53 of 500 forks under a limit of 64, in the restored source and in a child).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from rock.runtime.base import RuntimeHandle

GROUP = "/sandbox"
# The setup's two capabilities, for this one process only: mount(2) needs CAP_SYS_ADMIN, and a
# cgroupfs root is mode 0555, so making the group needs CAP_DAC_OVERRIDE (runsc exec's --cap
# replaces the process's capabilities with the ones named).
SETUP_CAPS = ("CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE")
SETUP = r"""
import ctypes, os, sys
sys.stderr = sys.stdout  # what went wrong comes back in runsc's output
libc = ctypes.CDLL(None, use_errno=True)
def check(ret, what):
    if ret != 0:
        raise SystemExit("%s: %s" % (what, os.strerror(ctypes.get_errno())))
flags = 2 | 4 | 8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
scratch = "/dev/.rock-pids-%d" % os.getpid()
os.mkdir(scratch, 0o700)
check(libc.mount(b"cgroup", scratch.encode(), b"cgroup", flags, b"pids"), "mount")
group = scratch + sys.argv[1]
os.makedirs(group, exist_ok=True)  # a restored sandbox has it already
with open(group + "/pids.max", "w") as f:
    f.write(sys.argv[2])
# The agent may be starting processes meanwhile (the setup runs while it boots): a child forked
# before its parent moved stays outside, so passes repeat until one finds no process not yet moved.
moved = {str(os.getpid())}
while True:
    with open(group + "/cgroup.procs") as f:
        inside = set(f.read().split())
    outside = [pid for pid in os.listdir("/proc") if pid.isdigit() and pid not in inside and pid not in moved]
    if not outside:
        break
    for pid in outside:
        moved.add(pid)
        try:
            with open(group + "/cgroup.procs", "w") as f:
                f.write(pid)
        except ProcessLookupError:
            pass  # exited meanwhile
with open("/proc/self/mountinfo") as f:
    shown = any(line.split()[4] == "/sys/fs/cgroup" for line in f)
if not shown:
    check(libc.mount(b"cgroup", b"/sys/fs/cgroup", b"cgroup", flags | 1, b"pids"), "mount read-only")  # MS_RDONLY
check(libc.umount2(scratch.encode(), 0), "umount")
os.rmdir(scratch)
"""

Runsc = Callable[..., Awaitable[str]]  # GvisorRuntime._runsc: (spec, *args, check=...) -> output


async def apply(runsc: Runsc, handle: RuntimeHandle, host_python: str) -> None:
    """Put a new sandbox's processes under its spec's ``pids_limit`` (nothing without one). Not
    run for a sandbox restored from a checkpoint: the restore brings back the read-only mount, the
    group, its limit and its tasks (measured: forks refused at the same count, with or without a
    second setup, which only cost ~100 ms a restore); it keeps the limit it was checkpointed with,
    as its agent keeps its memory limit. runsc 20221219 does not restore the kernel's registry of
    hierarchies, so its control server answers "controller not active" there (``read``)."""
    limit = handle.spec.pids_limit
    cid = handle.extra["cid"]
    if limit is None:
        return
    # A failed setup raises with its output: a limit asked for and not set is an error, as on the host.
    await runsc(handle.spec, "exec", *(f"--cap={cap}" for cap in SETUP_CAPS), cid,
                host_python, "-I", "-S", "-c", SETUP, GROUP, str(limit))


async def read(runsc: Runsc, handle: RuntimeHandle) -> tuple[int | None, int | None]:
    """(processes in the sandbox's group, its limit), or (None, None) where it has none or the
    control server cannot find it (a restored sandbox, see ``apply``): the sentry's own count,
    threads included, as a host pids cgroup counts them."""
    if handle.spec.pids_limit is None:
        return None, None
    cid = handle.extra["cid"]
    current, limit = await asyncio.gather(*(runsc(handle.spec, "read-control", cid, "pids", GROUP, name, check=False)
                                            for name in ("pids.current", "pids.max")))
    return _number(current), _number(limit)


def _number(said: str) -> int | None:
    said = said.strip()
    return int(said) if said.isdigit() else None
