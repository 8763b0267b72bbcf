"""What a run of ROCK left behind on this machine: containers, processes, cgroups, mounts, loop
devices, open files and network namespaces of ours, found by the state directory they name.

The test suite's session-end check and the soak benchmark share it.
"""

from __future__ import annotations

import os


def leftovers(root: str, owner_keys: set[str], every_netns: bool = True) -> list[str]:
    """What a run under state directory ``root`` left: containers, processes, cgroups of ``owner_keys``,
    mounts, open files, network namespaces and loop devices, one line each.

    ``every_netns``: any named network namespace of ROCK's counts (a gVisor sandbox's, made by
    whichever process ran it); False counts only those of ``owner_keys``, for a run that shares the
    machine with another one still running (a test worker beside its siblings)."""
    from rock.runtime import cgroups

    problems = [f"container {c}" for c in _containers(root)]
    problems += [f"process {pid}: {cmd}" for pid, cmd in sorted(_processes(root).items())]
    for rel in cgroups.all_rock_groups():
        if rel.split("/")[1] in owner_keys:
            problems.append(f"cgroup {rel} (pids {sorted(cgroups.Cgroup(rel).pids())})")
    for key in sorted(owner_keys):  # an owner's group left empty: no sandbox's group is in it
        problems += [f"cgroup {d} (an owner's, empty)" for d in cgroups.owner_dirs(key) if not any(_subdirs(d))]
    with open("/proc/self/mountinfo") as f:
        problems += [f"mount {line.split()[4]}" for line in f if root in line.split()[4]]
    problems += [f"open file {path} (pid {pid})" for pid, path in _open_files(root)]
    mine = tuple(f"rock-{key}{sep}" for key in owner_keys for sep in "-_")  # gVisor's names: rock-<key>[_r<n>]-<id>
    problems += [f"network namespace {name}" for name in _named_netns()
                 if ("rock" in name if every_netns else name.startswith(mine))]
    problems += [f"loop device {dev} ({backing})" for dev, backing in _loop_devices() if root in backing]
    return problems


def _subdirs(d):
    try:
        return [c for c in d.iterdir() if c.is_dir()]
    except OSError:  # removed meanwhile
        return []


def _loop_devices() -> list[tuple[str, str]]:
    """Attached loop devices and their backing files (a volume's image, ``rock.admin.volumes``)."""
    found = []
    for dev in sorted(os.listdir("/sys/block")) if os.path.isdir("/sys/block") else ():
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                found.append((dev, f.read().strip()))
        except OSError:
            continue
    return found


def _open_files(root: str) -> list[tuple[int, str]]:
    """Descriptors of any process (this one too) still open on something under the session dir."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(root) and not _ray_driver_log(int(entry), target):
                found.append((int(entry), target))
    return found


def _ray_driver_log(pid: int, path: str) -> bool:
    """Ray's core worker keeps the driver's log files open after ``ray.shutdown()`` until the
    process exits: in the auditing process itself that is Ray's, not a leak of ours."""
    return pid == os.getpid() and "/session_" in path and "/logs/" in path


def _named_netns() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except OSError:
        return []


def _containers(root: str) -> list[str]:
    try:
        import docker

        client = docker.from_env(version="auto", timeout=10)
        found = client.api.containers(all=True, filters={"label": "rock.managed=1"})
    except Exception:  # noqa: BLE001 - no engine, nothing to leak
        return []
    return [
        f"{c['Id'][:12]} {c.get('Names')} state_dir={c['Labels'].get('rock.state_dir')}"
        for c in found
        if (c.get("Labels") or {}).get("rock.state_dir", "").startswith(root)
    ]


def _processes(root: str) -> dict[int, str]:
    """Live processes whose command line or environment names the session directory."""
    needle = root.encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found
