"""What of the host's mount table the zygote keeps for a bwrap sandbox's bwrap (``rock.agent.mounttrim``):
what bwrap binds from and the way there, nothing else, and never by touching the host's table."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from rock.agent.mounttrim import parse, to_detach
from rock.runtime import cgroups
from rock.runtime.bwrap.options import mounts_to_keep, real_paths

MOUNTINFO = "\n".join([
    "21 1 254:0 / / rw - ext4 /dev/vda rw",
    "22 21 0:21 / /proc rw - proc proc rw",
    "23 22 0:40 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw",
    "24 21 0:22 / /sys rw - sysfs sysfs rw",
    "25 24 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw",
    "26 25 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
    "27 25 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset",
    "28 21 0:6 / /dev rw - devtmpfs devtmpfs rw",
    "29 28 0:23 / /dev/shm rw - tmpfs tmpfs rw",
    "30 29 0:27 / /dev/shm rw - tmpfs tmpfs rw",  # stacked on the one before
    "31 21 0:4 net:[4026532300] /run/docker/netns/abc rw - nsfs nsfs rw",
    "32 21 254:0 /var/lib/docker /var/lib/docker rw - ext4 /dev/vda rw",
    "33 32 0:50 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw",
    "34 21 0:51 / /data rw - tmpfs tmpfs rw",
    "35 34 0:52 / /data/sub rw - tmpfs tmpfs rw",
    "36 21 0:53 / /with\\040space rw - tmpfs tmpfs rw",
    "37 21 0:54 / /state/sandboxes/s1/root rw - overlay overlay rw",
])
NEEDED = ["/proc", "/dev", "/sys/fs/cgroup/memory", "/data", "/state/sandboxes/s1/root", "/usr/bin/bwrap"]


def test_parse_reads_ids_parents_and_unescaped_mount_points():
    mounts = parse(MOUNTINFO)
    assert mounts[0] == (21, 1, "/")
    assert (36, 21, "/with space") in mounts
    assert len(mounts) == 17


def test_every_mount_that_leads_nowhere_bwrap_builds_from_goes_topmost_first():
    plan = to_detach(parse(MOUNTINFO), NEEDED, recursive=["/data"])
    assert plan == [("/proc/sys/fs/binfmt_misc", 1), ("/sys/fs/cgroup/cpuset", 1), ("/dev/shm", 2),
                    ("/run/docker/netns/abc", 1), ("/var/lib/docker", 1), ("/with space", 1)]
    # Kept: the root, the way to each needed path, the sandbox's root, and /data with what is
    # mounted below it (bwrap binds it recursively); docker's overlay goes with its parent.
    gone = {path for path, _ in plan}
    assert not gone & {"/", "/proc", "/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/dev", "/data", "/data/sub",
                       "/state/sandboxes/s1/root", "/var/lib/docker/overlay2/x/merged"}


def test_a_source_that_is_the_whole_root_keeps_everything():
    assert to_detach(parse(MOUNTINFO), NEEDED, recursive=["/"]) == []


def test_only_binds_are_sources_even_when_a_value_looks_like_an_option(tmp_path):
    root, data = tmp_path / "root", tmp_path / "data"
    options = ["--bind", str(root), "/", "--proc", "/proc", "--tmpfs", "/tmp", "--hostname", "--bind",
               "--setenv", "EVIL", "--ro-bind", "--setenv", "X", "/etc", "--ro-bind", str(data), "/data",
               "--cap-add", "--dev-bind", "--unshare-net"]
    keep = mounts_to_keep(options, root, "/usr/bin/bwrap")
    assert keep["recursive"] == [os.path.realpath(root), os.path.realpath(data)]
    assert {"/proc", "/dev", os.path.realpath(root)} <= set(keep["needed"])
    assert set(keep["recursive"]) <= set(keep["needed"])


def test_the_sources_resolved_once_per_worker_are_the_real_paths(tmp_path):
    """The state dir reached through a symlink: the shortcut names what a realpath of each
    source names, the sandbox's root and run folder, its cgroup directories and the fixed ones."""
    (tmp_path / "state" / "sandboxes" / "s1" / "run").mkdir(parents=True)
    (tmp_path / "state" / "sandboxes" / "s1" / "root").mkdir()
    (tmp_path / "prefix").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "state")
    (tmp_path / "prefix-link").symlink_to(tmp_path / "prefix")
    sandbox_dir = tmp_path / "link" / "sandboxes" / "s1"
    group = cgroups.Cgroup("rock/owner/s1")
    fixed = (str(tmp_path / "prefix-link"),)
    resolved = real_paths(sandbox_dir, ("root", "run"), group, fixed)
    assert resolved == {path: os.path.realpath(path) for path in resolved}
    assert resolved[str(sandbox_dir / "root")] == str(tmp_path / "state" / "sandboxes" / "s1" / "root")
    assert set(resolved) == {str(sandbox_dir / "root"), str(sandbox_dir / "run"), *fixed,
                             *(str(d) for d in group.dirs.values())}
    options = ["--bind", str(sandbox_dir / "root"), "/", "--ro-bind", fixed[0], "/opt/p",
               "--bind", str(sandbox_dir / "run"), "/.rock/run", "--ro-bind", str(tmp_path / "link"), "/data"]
    assert mounts_to_keep(options, sandbox_dir / "root", "/usr/bin/bwrap", resolved) == \
        mounts_to_keep(options, sandbox_dir / "root", "/usr/bin/bwrap")


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "rock-test", str(path)], check=True)


def _mount_points(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [mount for _, _, mount in parse(f.read())]


@pytest.mark.bwrap
async def test_bwrap_sees_only_the_host_mounts_it_binds_from_and_the_host_keeps_its_own(
        make_runtime, sandboxes, new_spec, agent, tmp_path):
    bwrap = make_runtime("bwrap")
    if bwrap.zygote is None:
        pytest.skip("mounts are trimmed on the zygote's path only")
    extra, data = tmp_path / "extra", tmp_path / "data"
    made = []
    try:
        for path in (extra, data, data / "sub"):
            _mount_tmpfs(path)
            made.append(path)
        (data / "hello.txt").write_text("hello\n")
        (data / "sub" / "inner.txt").write_text("inner\n")
        handle = await sandboxes(bwrap, new_spec(ro_binds=[str(data)]))
        # The namespace the zygote made for the sandbox (bwrap's outer process runs in it): the
        # bound source and what is mounted below it stay; a host mount the sandbox does not use is
        # gone from it.
        made_ns = _mount_points(handle.pid)
        assert str(data) in made_ns and str(data / "sub") in made_ns, made_ns
        assert str(extra) not in made_ns, made_ns
        assert len(made_ns) < len(_mount_points("self")), made_ns
        # The host's table is untouched: the detach happened in that private namespace.
        assert {str(extra), str(data), str(data / "sub")} <= set(_mount_points("self"))
        async with agent(handle) as client:
            result = await client.exec(f"cat {data}/hello.txt {data}/sub/inner.txt", shell=True)
        assert result.stdout == "hello\ninner\n", result
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        for path in reversed(made):
            libc.umount2(os.fsencode(path), 2)
