"""The host mounts a bwrap sandbox is built from, and detaching every other one from the mount
namespace the zygote makes for it (``zygote.prepare_root``), before bwrap starts.

Why: bwrap reads the whole mount table (``/proc/self/mountinfo``) after each of the ~15 mounts it
makes for a sandbox and copies it into the sandbox's namespace, so its CPU grows with the host's
mount count, which a container engine on the same host raises by two per running container
(its root and its network namespace). Measured on a 2-core VM, per bwrap process of a ROCK
sandbox: 2.2 ms with the host's 21 mounts, 10.7 ms once 100 Docker containers ran beside it
(221 mounts); a bare ``bwrap`` with the sandbox's options took 4.5, 8.3 and 17.1 ms of CPU at 21,
121 and 321 mounts. In that namespace's table bwrap finds only what it binds from and what leads there.

Only ever called in a mount namespace of the sandbox's own whose mounts were made private first:
a detach there never reaches the host. Standard library only (it runs in the zygote).
"""

import ctypes

MNT_DETACH = 2
_umount2 = ctypes.CDLL(None, use_errno=True).umount2
_ESCAPES = {"\\040": " ", "\\011": "\t", "\\012": "\n", "\\134": "\\"}


def _unescape(path):
    """A mount point as mountinfo writes it (space, tab, newline and backslash as octal)."""
    if "\\" not in path:
        return path
    for code, char in _ESCAPES.items():
        path = path.replace(code, char)
    return path


def parse(text):
    """``(mount id, parent id, mount point)`` of each line of a mountinfo text, in its order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            mounts.append((int(fields[0]), int(fields[1]), _unescape(fields[4])))
    return mounts


def _under(path, top):
    return top == "/" or path == top or path.startswith(top + "/")


def to_detach(mounts, needed, recursive):
    """The mount points to detach, with how many mounts are stacked at each.

    A mount stays if a ``needed`` path lies under it (so every mount on the way to one stays) or
    if it lies under a ``recursive`` path (bwrap binds with everything mounted below). Both
    rules keep a mount's parent along with it, so detaching each topmost one that goes (its
    parent stays) takes everything mounted below it too. Decisions go by mount point, the same
    for every mount stacked there; a detach by path takes the top of such a stack, hence the count.
    """
    kept = {mid for mid, _, path in mounts
            if any(_under(n, path) for n in needed) or any(_under(path, r) for r in recursive)}
    stacked = {}
    for mid, _, path in mounts:
        if mid not in kept:
            stacked[path] = stacked.get(path, 0) + 1
    known = {mid for mid, _, _ in mounts}
    out, seen = [], set()
    for mid, parent, path in mounts:
        if mid not in kept and (parent in kept or parent not in known) and path not in seen:
            seen.add(path)
            out.append((path, stacked[path]))
    return out


def trim(needed, recursive):
    """Detach, in this (private) mount namespace, every mount ``to_detach`` names; returns how
    many mount points went. A mount point that is already gone (it was below another) is skipped."""
    with open("/proc/self/mountinfo") as f:
        plan = to_detach(parse(f.read()), needed, recursive)
    gone = 0
    for path, count in plan:
        detached = 0
        while detached < count and _umount2(path.encode(), MNT_DETACH) == 0:
            detached += 1
        gone += detached > 0
    return gone
