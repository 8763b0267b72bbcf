"""Cgroups for sandboxes: limits and kill for the ones we run (bwrap), accounting for all.

Works on cgroup v1 (one hierarchy per controller, possibly co-mounted like ``cpu,cpuacct``)
and on v2 (one unified tree). Our groups live at ``rock/<owner key>/<sandbox id>`` under
each hierarchy's root, the same level Docker uses for ``docker/<id>``, so a leftover is
easy to find and the tree never depends on where the worker itself happens to run.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import time
from pathlib import Path

# The agent reads the same files from inside a sandbox; share its parsing (it is stdlib-only).
from rock.agent.stats import _int, _read
from rock.errors import SandboxStartError

log = logging.getLogger("rock.runtime.cgroups")

ROOT = Path("/sys/fs/cgroup")
PREFIX = "rock"
# v1 controllers we use: limits (memory, pids, cpu), accounting (cpuacct) and pause (freezer; v2
# has cgroup.freeze in every group).
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
V2_CONTROLLERS = ("memory", "pids", "cpu")
CFS_PERIOD_US = 100_000
# A group's name is its sandbox's runtime id; a gVisor sandbox restored in place from its own
# checkpoint runs in ``<id>+r<tag>`` (rock.runtime.gvisor: the checkpointed container's delete
# removes the group it ran in). ``+`` is in no sandbox id.
RESTORED = "+r"


@functools.cache
def is_v2() -> bool:
    """Which cgroup version this machine runs: fixed at boot, asked many times per start and delete."""
    return (ROOT / "cgroup.controllers").exists()


@functools.cache
def _v1_hierarchies() -> list[tuple[Path, list[str]]]:
    """Each v1 hierarchy mounted here, read from mountinfo: its mount point and its options (the
    controllers it holds, or a name such as name=systemd)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, superopts = (right.split() + ["", "", ""])[:3]
            if fstype == "cgroup":
                found.append((Path(left.split()[4]), superopts.split(",")))
    return found


@functools.cache
def v1_mounts() -> dict[str, Path]:
    """Controller -> mount point, for the controllers ROCK uses (hierarchies may be co-mounted)."""
    mounts: dict[str, Path] = {}
    for mount_point, opts in _v1_hierarchies():
        for opt in opts:
            if opt in V1_CONTROLLERS:
                mounts.setdefault(opt, mount_point)
    return mounts


@functools.cache
def hierarchies() -> list[Path]:
    """The root of every cgroup hierarchy mounted here: v2's one tree, or each of v1's, also those
    ROCK sets nothing in (blkio, devices, cpuset, name=systemd...), where runsc makes groups too."""
    if is_v2():
        return [ROOT]
    return sorted({mount_point for mount_point, _ in _v1_hierarchies()})


class Cgroup:
    """One cgroup, identified by its path relative to each hierarchy's root."""

    def __init__(self, rel: str):
        self.rel = rel.strip("/")
        if is_v2():
            self.dirs = {c: ROOT / self.rel for c in (*V2_CONTROLLERS, "cpuacct")}
        else:
            self.dirs = {c: m / self.rel for c, m in v1_mounts().items()}

    def __repr__(self) -> str:
        return f"Cgroup({self.rel!r})"

    def unique_dirs(self) -> list[Path]:
        """Each directory once (co-mounted controllers share one), deepest-first safe order."""
        return sorted(set(self.dirs.values()))

    def join_files(self) -> list[str]:
        """Files a single-threaded process writes ``0`` into to move itself into this group.

        On v1 that is ``tasks``: moving only the calling thread skips the global lock that a
        ``cgroup.procs`` write takes, which waits for an RCU grace period (~10 ms here) on
        every create that does not follow another closely. v2 has only ``cgroup.procs``.
        """
        return [str(d / _member_file()) for d in self.unique_dirs()]

    def exists(self) -> bool:
        """Whether the group has a directory in any hierarchy."""
        return any(d.is_dir() for d in self.unique_dirs())

    # -- create with limits ---------------------------------------------------------------

    def create(self, memory_bytes: int | None, cpus: float | None, pids_limit: int | None) -> None:
        """Make the group with its memory, cpu and pids limits (cgroup v2 or v1, as the host has)."""
        if is_v2():
            self._create_v2(memory_bytes, cpus, pids_limit)
        else:
            self._create_v1(memory_bytes, cpus, pids_limit)

    def _create_v1(self, memory_bytes, cpus, pids_limit) -> None:
        for d in self.unique_dirs():
            d.mkdir(parents=True, exist_ok=True)
        if memory_bytes:
            _limit(self.dirs.get("memory"), "memory.limit_in_bytes", memory_bytes)
            # Same value for memory+swap: the sandbox cannot swap its way past the limit.
            memsw = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(memory_bytes))
        if pids_limit:
            _limit(self.dirs.get("pids"), "pids.max", pids_limit)
        if cpus:
            _limit(self.dirs.get("cpu"), "cpu.cfs_period_us", CFS_PERIOD_US)
            _limit(self.dirs.get("cpu"), "cpu.cfs_quota_us", int(cpus * CFS_PERIOD_US))

    def _create_v2(self, memory_bytes, cpus, pids_limit) -> None:
        # Controllers must be enabled in every ancestor's subtree_control to reach the leaf.
        parts = Path(self.rel).parts
        for i in range(len(parts)):
            parent = ROOT.joinpath(*parts[:i])
            available = set((_read(parent / "cgroup.controllers") or "").split())
            enabled = set((_read(parent / "cgroup.subtree_control") or "").split())
            for ctrl in V2_CONTROLLERS:
                if ctrl in available and ctrl not in enabled:
                    try:
                        (parent / "cgroup.subtree_control").write_text("+" + ctrl)
                    except OSError as exc:  # e.g. cpu while a realtime process runs: go without it
                        log.warning("cannot enable the %s controller in %s: %s", ctrl, parent, exc)
            ROOT.joinpath(*parts[: i + 1]).mkdir(exist_ok=True)
        d = ROOT / self.rel
        if memory_bytes:
            _limit(d, "memory.max", memory_bytes)
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
        if pids_limit:
            _limit(d, "pids.max", pids_limit)
        if cpus:
            _limit(d, "cpu.max", f"{int(cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")

    # -- processes ------------------------------------------------------------------------

    def pids(self) -> set[int]:
        """The ids of the processes in the group."""
        found: set[int] = set()
        for d in self.unique_dirs():
            text = _read(d / "cgroup.procs")
            if text:
                found.update(int(p) for p in text.split())
        return found

    def kill(self) -> None:
        """SIGKILL everything in the group. v2 has one atomic file for it. v1 needs a loop over the
        members, which a process forking as fast as it is killed (or a busy machine's scheduler
        letting it) can outrun: the group is frozen first, so no member runs or forks while the
        loop goes, then thawed, and the pending SIGKILLs land. Nothing here waits for the freeze
        to complete (that would wait on the scheduler): a child forked meanwhile is frozen with
        the group and found by the second pass."""
        kill_file = ROOT / self.rel / "cgroup.kill"
        if is_v2() and kill_file.exists():
            kill_file.write_text("1")
            return
        state = self.dirs.get("freezer", ROOT / "-") / "freezer.state"
        try:
            state.write_text("FROZEN")
        except OSError:  # no freezer here, or the group is gone: the loop alone
            pass
        for _ in range(2):
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # A v1-frozen task keeps a pending SIGKILL until it is thawed (a paused sandbox's delete too).
        if (_read(state) or "THAWED").strip() != "THAWED":
            state.write_text("THAWED")

    def try_remove(self, kill: bool = True) -> bool:
        """One attempt: kill all members (unless ``kill`` is False: they were killed already),
        remove the group (and empty parents) if the kernel has let them all go; True once it is
        gone. Killed processes leave asynchronously and v1 has no event for "empty", so callers retry."""
        if kill:
            self.kill()
        if any(not _rmdir(d) for d in reversed(self.unique_dirs())):
            return False
        self._remove_empty_parents()
        return True

    async def destroy(self, timeout: float = 10.0) -> None:
        """Freeze and kill all members, wait until the group is empty, remove it (and empty parents).
        The wait is for progress, not a fixed time: on a loaded machine killed processes leave
        slowly, and while their number falls the wait goes on; ``timeout`` seconds in which none
        left raises TimeoutError."""
        deadline = time.monotonic() + timeout
        delay, left = 0.001, None
        while not self.try_remove():
            now, members = time.monotonic(), len(self.pids())
            if left is None or members < left:
                left, deadline = members, now + timeout
            elif now > deadline:
                raise TimeoutError(f"{self}: still has processes {sorted(self.pids())} after {timeout}s with none "
                                   "leaving")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove_elsewhere(self) -> None:
        """Remove the group's empty directories in the hierarchies ROCK sets nothing in: runsc
        makes the group there too (and the owner's above it) and removes it only when its own
        delete runs to the end."""
        ours = set(self.unique_dirs())
        for root in hierarchies():
            if root / self.rel not in ours and _rmdir(root / self.rel):
                self._remove_empty_parents_in(root)

    def _remove_empty_parents(self) -> None:
        for d in self.unique_dirs():
            self._remove_empty_parents_in(Path(str(d)[: -len(self.rel)]))

    def _remove_empty_parents_in(self, root: Path) -> None:
        """The group's parents under ``root`` that nothing else uses now (another sandbox of the
        owner keeps the owner's); the top-level "rock" directory stays."""
        parts = Path(self.rel).parts
        for i in range(len(parts) - 1, 1, -1):
            if not _rmdir(root.joinpath(*parts[:i])):
                break

    # -- pause ------------------------------------------------------------------------------

    async def set_frozen(self, frozen: bool, timeout: float = 10.0) -> None:
        """Freeze (or thaw) every process of the group and return once the kernel says it is so.
        Frozen tasks stay in memory and get no CPU; the kernel stops them at their next return
        to user space, so the write returns before they all are: wait for the state to say so."""
        v1 = not is_v2()
        if not v1:
            control, value, thawed = ROOT / self.rel / "cgroup.freeze", "1" if frozen else "0", "0"
            done = lambda: f"frozen {value}" in (_read(ROOT / self.rel / "cgroup.events") or "")  # noqa: E731
        else:
            if "freezer" not in self.dirs:
                raise OSError("the freezer cgroup controller is not mounted here: sandboxes cannot be paused")
            control, value, thawed = self.dirs["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED", "THAWED"
            done = lambda: (_read(control) or "").strip() == value  # noqa: E731 - the read also advances FREEZING
        control.write_text(value)
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while not done():  # no event for it on v1 (v2 has one, but a poll here is microseconds)
            if time.monotonic() > deadline:
                if frozen:  # never leave it half frozen: the frozen half would hold what the rest waits on
                    control.write_text(thawed)
                raise TimeoutError(f"{self}: not {'frozen' if frozen else 'thawed'} after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
            if frozen and v1:
                # v1 asks each task to freeze once, when FROZEN is written. A thread then in the
                # kernel that goes on to a sleep only a fatal signal ends (a vfork parent waiting for
                # its child, which the same write froze) never sees the ask, and the group stays
                # FREEZING for good. Writing FROZEN again freezes such a sleeper where it lies
                # (runc's freezer writes it in a loop for the same reason).
                control.write_text(value)

    def frozen(self) -> bool:
        """Whether the group is frozen (paused)."""
        if is_v2():
            return "frozen 1" in (_read(ROOT / self.rel / "cgroup.events") or "")
        return "freezer" in self.dirs and (_read(self.dirs["freezer"] / "freezer.state") or "").strip() == "FROZEN"

    # -- accounting -----------------------------------------------------------------------

    def stats(self) -> dict:
        """The group's cpu seconds, memory and pids with their limits."""
        if is_v2():
            d = ROOT / self.rel
            usage = _read(d / "cpu.stat") or ""
            micros = next((int(ln.split()[1]) for ln in usage.splitlines() if ln.startswith("usage_usec")), None)
            return {
                "cpu_seconds": micros / 1e6 if micros is not None else None,
                "memory_bytes": _int(_read(d / "memory.current")),
                "memory_limit_bytes": _int(_read(d / "memory.max")),
                "pids": _int(_read(d / "pids.current")),
                "pids_limit": _int(_read(d / "pids.max")),
                "forks_refused": _refused(d),
            }
        get = lambda ctrl, name: _int(_read(self.dirs[ctrl] / name)) if ctrl in self.dirs else None  # noqa: E731
        nanos = get("cpuacct", "cpuacct.usage")
        return {
            "cpu_seconds": nanos / 1e9 if nanos is not None else None,
            "memory_bytes": get("memory", "memory.usage_in_bytes"),
            "memory_limit_bytes": get("memory", "memory.limit_in_bytes"),
            "pids": get("pids", "pids.current"),
            "pids_limit": get("pids", "pids.max"),
            "forks_refused": _refused(self.dirs["pids"]) if "pids" in self.dirs else None,
        }


def _refused(d: Path) -> int | None:
    """The ``max`` count of a group's ``pids.events`` (v1 and v2 alike): forks refused at its limit."""
    events = (_read(d / "pids.events") or "").split()
    return int(events[events.index("max") + 1]) if "max" in events else None


def _limit(d: Path | None, name: str, value) -> None:
    """Write a limit; a limit that was asked for and cannot be set is an error, not a warning."""
    if d is None or not (d / name).exists():
        raise SandboxStartError(f"cannot set {name}: that cgroup controller is not available here")
    (d / name).write_text(str(value))


def _rmdir(d: Path) -> bool:
    """True when ``d`` is gone afterwards; False when it still has members or children."""
    try:
        d.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


def sandbox_of(name: str) -> str:
    """The sandbox (runtime) id a group's name is for (see ``RESTORED``)."""
    return name.partition(RESTORED)[0]


def owned(owner_key: str) -> dict[str, Cgroup]:
    """Group name -> cgroup, for every group this owner has in any hierarchy (``sandbox_of``
    gives the sandbox a name is for)."""
    bases = hierarchies()
    found: dict[str, Cgroup] = {}
    for base in bases:
        d = base / PREFIX / owner_key
        if d.is_dir():
            for child in d.iterdir():
                if child.is_dir():
                    found.setdefault(child.name, Cgroup(f"{PREFIX}/{owner_key}/{child.name}"))
    return found


def owner_dirs(owner_key: str) -> list[Path]:
    """The owner's own group, ``rock/<owner key>``, in each hierarchy that has it (with its
    sandboxes' groups in it, or none)."""
    return [d for d in (base / PREFIX / owner_key for base in hierarchies()) if d.is_dir()]


def remove_empty_owner(owner_key: str) -> None:
    """Remove the owner's group wherever no sandbox's group is in it: a group that runsc removed
    itself (its delete of a container) leaves the owner's above it."""
    for d in owner_dirs(owner_key):
        _rmdir(d)


def home_files(pid: int) -> list[str]:
    """The files a single-threaded process writes ``0`` into to move back to the groups ``pid`` is in
    now, in each hierarchy a sandbox's group is joined in (``Cgroup.join_files``): how bwrap's
    zygote returns to its own groups after starting a sandbox's bwrap from inside the sandbox's.
    Empty when they cannot be read (the zygote then refuses to step into a sandbox's group)."""
    own: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(",") if controllers else ("",):
                    own[controller] = path.lstrip("/")
    except (OSError, ValueError):
        return []
    if is_v2():
        return [str(ROOT / own[""] / _member_file())] if "" in own else []
    return sorted({str(mount / own[ctrl] / _member_file()) for ctrl, mount in v1_mounts().items() if ctrl in own})


def _member_file() -> str:
    """The file a process writes 0 into to join a group: on v1 ``tasks`` (``Cgroup.join_files``
    says why), on v2 the only one there is."""
    return "cgroup.procs" if is_v2() else "tasks"


def all_rock_groups() -> list[str]:
    """Every ``rock/<owner>/<id>`` group on the machine, in any hierarchy, as relative paths (for
    leak checks)."""
    bases = hierarchies()
    found: set[str] = set()
    for base in bases:
        top = base / PREFIX
        if top.is_dir():
            for owner_dir in top.iterdir():
                if owner_dir.is_dir():
                    found.update(f"{PREFIX}/{owner_dir.name}/{c.name}" for c in owner_dir.iterdir() if c.is_dir())
    return sorted(found)


def sandbox_group(backend: str, runtime_id: str) -> Cgroup | None:
    """The cgroup of a sandbox from its handle's backend and runtime id: Docker's for a
    container, ours otherwise."""
    return docker_group(runtime_id) if backend == "docker" else Cgroup(runtime_id)


def docker_group(container_id: str) -> Cgroup | None:
    """The cgroup Docker made for a container: cgroupfs driver or systemd driver layout."""
    for rel in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        group = Cgroup(rel)
        if group.exists():
            return group
    return None
