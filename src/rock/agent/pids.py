"""A gVisor sandbox's process limit, set by its agent as the sandbox's first act (the host's side
and the reasons are in rock.runtime.gvisor.pids).

The sentry of runsc 20221219 has a pids controller but never mounts it, and a hierarchy lives
only while mounted. So the agent, the sandbox's first process, starts with two capabilities
the sandbox must not keep, CAP_SYS_ADMIN (mount) and CAP_SETPCAP (to drop a capability from
the bounding set), and before it signals ready or starts anything it:

1. mounts the pids hierarchy on a scratch directory, makes ``/sandbox`` with the limit and
   moves itself there (all it starts later is born inside);
2. leaves a read-only view at ``/sys/fs/cgroup`` (as Docker shows its cgroups) and unmounts the
   writable one;
3. drops both capabilities from its bounding, effective, permitted and inheritable sets, and
   reads its own status back: a capability still there ends the agent (the start fails),
   never a sandbox that could remount the group.

The sandbox's root can then neither write the limit nor move out (EROFS), nor unmount or mount
cgroupfs (no CAP_SYS_ADMIN, and none to be had: the bounding set lacks it and the container
runs with no_new_privs). A checkpoint keeps the mount, the group and the tasks in it, and a
restored agent has dropped its capabilities already.

Before, the worker ran the same setup with ``runsc exec`` beside the agent's boot: a second
Python started inside the sandbox, about 250 ms of a 450 ms start here.

Standard library only, like the rest of the agent.
"""

import posix

GROUP = "/sandbox"
CAP_SETPCAP, CAP_SYS_ADMIN = 8, 21
DROPPED = (CAP_SYS_ADMIN, CAP_SETPCAP)  # CAP_SETPCAP last: dropping the other from the bounding set needs it
_PR_CAPBSET_DROP = 24
_CAPS_V3 = 0x20080522
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8


def setup(limit: str) -> None:
    """Put this process (the agent, before it starts anything) under a pids limit of ``limit``
    and give up the capabilities that did it; raises OSError if either fails."""
    from . import libc

    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    scratch = "/dev/.rock-pids-%d" % posix.getpid()
    posix.mkdir(scratch, 0o700)
    libc.check("mount", b"cgroup", scratch.encode(), b"cgroup", flags, b"pids", what="mount the pids hierarchy")
    group = scratch + GROUP
    posix.mkdir(group, 0o755)
    with open(group + "/pids.max", "w") as f:
        f.write(limit)
    with open(group + "/cgroup.procs", "w") as f:
        f.write(str(posix.getpid()))  # the sandbox's only process yet: what it starts is born inside
    with open("/proc/self/mountinfo") as f:
        shown = any(line.split()[4] == "/sys/fs/cgroup" for line in f)
    if not shown:
        libc.check("mount", b"cgroup", b"/sys/fs/cgroup", b"cgroup", flags | _MS_RDONLY, b"pids",
                   what="mount the pids hierarchy read-only")
    libc.check("umount2", scratch.encode(), 0, what="unmount the writable pids hierarchy")
    posix.rmdir(scratch)
    drop()


def drop() -> None:
    """Give up ``DROPPED`` for good: out of the bounding set, then the effective, permitted and
    inheritable sets (capset); then check /proc/self/status says so."""
    from . import libc

    for cap in DROPPED:
        libc.check("prctl", _PR_CAPBSET_DROP, cap, 0, 0, 0, what="drop capability %d from the bounding set" % cap)
    header = libc.u32((_CAPS_V3, 0))
    data = libc.u32((0,) * 6)  # two of {effective, permitted, inheritable}: capabilities 0-31, 32-63
    libc.check("capget", header, data)
    mask = ~sum(1 << cap for cap in DROPPED) & 0xFFFFFFFF
    for i in range(3):  # every capability dropped here is below 32
        data[i] &= mask
    libc.check("capset", header, data)
    left = held()
    if left:
        raise OSError("capabilities still held after the drop: %s" % ", ".join(left))


def held() -> list:
    """Which of ``DROPPED`` this process still has, in which set (from /proc/self/status)."""
    out = []
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                bits = int(value.strip(), 16)
                out += ["%s %d" % (name, cap) for cap in DROPPED if bits >> cap & 1]
    return out
