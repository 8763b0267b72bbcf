"""Sandboxes from bubblewrap namespaces, an overlayfs root and cgroup limits. No daemon.

Process tree of one sandbox (all of it inside the sandbox's cgroup):

    sh "rock-shim"   joins the cgroup, then waits; detached (own session), so a worker
      └ bwrap        restart does not touch it; bwrap --die-with-parent dies with it
          └ init     pid 1 of the sandbox's pid namespace (bwrap's reaper)
              └ agent

Root filesystem: an overlay whose lower layer is the host root (read-only, with private
tmpfs over the places where the host keeps its own and other sandboxes' data) or an image
rootfs, and whose upper layer is ``<state_dir>/sandboxes/<id>/upper``: the sandbox's files
survive it and no other sandbox sees them. bubblewrap 0.8 cannot mount overlays itself,
so we mount it on the host, let bwrap bind it as ``/``, and detach the host's copy as soon
as the agent is up: the sandbox's mount namespace keeps it alive, and the kernel drops it
when the last process of the sandbox exits, so nothing is left mounted on the host.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from rock.errors import SandboxStartError
from rock.runtime import cgroups
from rock.runtime.base import (
    AGENT_SRC,
    READY_TIMEOUT,
    SANDBOX_LIB,
    SANDBOX_RUN,
    ResourceStats,
    Runtime,
    RuntimeHandle,
    SandboxSpec,
    exit_future,
    exit_reason,
    process_alive,
    process_start_time,
)

log = logging.getLogger("rock.runtime.bwrap")

# What root inside the sandbox may still do: own and chmod files (package managers, tar,
# the agent's chown op), bypass file permissions as root does, drop to another uid/gid
# (apt's _apt user, su), and signal processes of other uids. Not: mount, ptrace, raw
# sockets, mknod, module loading, or anything else in CAP_SYS_*.
CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID")
# Ports below 1024 are only harmless in the sandbox's own network namespace.
CAPS_PRIVATE_NET = ("CAP_NET_BIND_SERVICE",)
# Host directories that hold users', daemons' or other sandboxes' data: hidden behind a
# private tmpfs when the sandbox's root is the host's own.
MASKED = ("/tmp", "/var/tmp", "/run", "/root", "/home", "/var/lib/docker", "/var/lib/containerd", "/var/log")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The shim: join the cgroup before bwrap exists, so everything bwrap starts is inside it.
SHIM = 'for f in $ROCK_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; "$@" & wait $!'
SHIM_NAME = "rock-shim"

_libc = ctypes.CDLL(None, use_errno=True)
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or ''} on {target}: {os.strerror(err)}")


def _detach(target: Path) -> None:
    if os.path.ismount(target):
        _libc.umount2(str(target).encode(), MNT_DETACH)


class BwrapRuntime(Runtime):
    name = "bwrap"

    def __init__(self, settings, owner: str):
        super().__init__(settings, owner)
        self.bwrap = shutil.which("bwrap") or "bwrap"
        self.python_prefix = str(Path(settings.host_python).parent.parent)
        self._exits: dict[str, asyncio.Future] = {}

    @classmethod
    def available(cls) -> str | None:
        if not shutil.which("bwrap"):
            return "bubblewrap (bwrap) is not installed"
        if os.geteuid() != 0:
            return "the bwrap backend mounts overlays and writes cgroups: it needs root"
        if not cgroups.is_v2() and not cgroups.v1_mounts():
            return "no cgroup hierarchy is mounted"
        return None

    # -- create ---------------------------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        t0 = time.perf_counter()
        sid = spec.sandbox_id
        lower, image_env = await self._lower(spec.image)
        group = cgroups.Cgroup(f"{cgroups.PREFIX}/{self.owner_key}/{sid}")
        if group.pids():
            raise SandboxStartError(f"sandbox {sid} is already running")
        run = self.prepare_run_dir(sid)
        sandbox_dir = run.parent
        group.create(spec.memory_bytes, spec.cpus, spec.pids_limit)
        merged = self._mount_root(sandbox_dir, lower)
        t_setup = time.perf_counter()
        log_path = sandbox_dir / "sandbox.log"
        argv = [self.bwrap, *self._bwrap_args(spec, merged, run, group, lower == "/", image_env)]
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                ["/bin/sh", "-c", SHIM, SHIM_NAME, *argv],
                env={"PATH": DEFAULT_PATH, "ROCK_CGROUP_PROCS": " ".join(group.procs_files())},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        exited = exit_future(popen)
        died = asyncio.ensure_future(exit_reason(exited, log_path))
        handle = RuntimeHandle(
            sandbox_id=sid, backend=self.name, runtime_id=group.rel, run_dir=str(run), spec=spec, pid=popen.pid,
            extra={"start_time": str(process_start_time(popen.pid)), "image_root": lower},
        )
        try:
            await self.wait_ready(run, died, READY_TIMEOUT)
        except BaseException:
            await self.destroy(handle)
            raise
        finally:
            died.cancel()
            _detach(merged)  # the sandbox holds its own reference to the overlay now
        self._exits[sid] = exited
        exited.add_done_callback(lambda _: self._exits.pop(sid, None))
        log.info("sandbox %s ready in %.1f ms (setup %.1f ms, pid %d)", sid, (time.perf_counter() - t0) * 1e3,
                 (t_setup - t0) * 1e3, popen.pid)
        return handle

    async def _lower(self, image: str | None) -> tuple[str, dict[str, str]]:
        """The overlay's lower layer and the image's environment (``/`` means the host root)."""
        if not image:
            return "/", {}
        if os.path.isdir(image):
            return os.path.realpath(image), {}
        root, env = await image_rootfs(image, Path(self.settings.state_dir) / "images")
        return str(root), env

    def _mount_root(self, sandbox_dir: Path, lower: str) -> Path:
        upper, work, merged = sandbox_dir / "upper", sandbox_dir / "ovl-work", sandbox_dir / "root"
        for d in (upper, work, merged):
            d.mkdir(exist_ok=True)
        paths = (lower, str(upper), str(work))
        if any("," in p or ":" in p for p in paths):
            raise SandboxStartError(f"overlay paths cannot contain ',' or ':': {paths}")
        _mount("overlay", str(merged), "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
        _mount("none", str(merged), None, MS_PRIVATE, None)
        return merged

    def _bwrap_args(self, spec: SandboxSpec, merged: Path, run: Path, group: cgroups.Cgroup, host_root: bool,
                    image_env: dict[str, str]) -> list[str]:
        args = ["--bind", str(merged), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]
        if host_root:
            state_dir = os.path.realpath(self.settings.state_dir)
            hidden = [d for d in MASKED if os.path.isdir(d)]
            if not any(state_dir.startswith(d + "/") for d in hidden):
                hidden.append(state_dir)
            for d in hidden:
                args += ["--tmpfs", d]
        elif spec.network and os.path.exists("/etc/resolv.conf"):
            args += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
        # The sandbox's own cgroup where a container would see it, read-only (agent stats).
        args += ["--tmpfs", "/sys"]
        if cgroups.is_v2():
            args += ["--ro-bind", str(cgroups.ROOT / group.rel), "/sys/fs/cgroup"]
        else:
            for ctrl, d in sorted(group.dirs.items()):
                args += ["--ro-bind", str(d), f"/sys/fs/cgroup/{ctrl}"]
        args += [
            "--ro-bind", self.python_prefix, self.python_prefix,
            "--ro-bind", str(AGENT_SRC), f"{SANDBOX_LIB}/rock_agent",
            "--bind", str(run), SANDBOX_RUN,
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", spec.sandbox_id[:63],
            "--die-with-parent", "--new-session", "--chdir", "/",
        ]
        caps = CAPS if spec.network else CAPS + CAPS_PRIVATE_NET
        if not spec.network:
            args.append("--unshare-net")
        # As root, bwrap keeps every capability unless told otherwise. The bounding set stays
        # full, but no_new_privs (bwrap always sets it) stops exec from regaining anything.
        args += ["--cap-drop", "ALL"]
        for cap in caps:
            args += ["--cap-add", cap]
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **image_env, **self.sandbox_env(spec)}
        args.append("--clearenv")
        for key, value in env.items():
            args += ["--setenv", key, value]
        # The host root has this very interpreter; an image may have its own python3.
        python = self.settings.host_python if host_root else None
        return args + self.agent_argv(python)

    # -- lifecycle ------------------------------------------------------------------------

    async def alive(self, handle: RuntimeHandle) -> bool:
        return handle.pid is not None and process_alive(handle.pid, handle.start_time)

    async def destroy(self, handle: RuntimeHandle) -> None:
        t0 = time.perf_counter()
        if handle.pid is not None and process_alive(handle.pid, handle.start_time):
            try:
                os.killpg(handle.pid, signal.SIGKILL)  # the shim and bwrap; --die-with-parent does the rest
            except ProcessLookupError:
                pass
        await cgroups.Cgroup(handle.runtime_id).destroy()
        await self._remove_dir(Path(handle.run_dir).parent)
        log.info("sandbox %s destroyed in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)

    async def _remove_dir(self, sandbox_dir: Path) -> None:
        _detach(sandbox_dir / "root")  # still mounted only if the worker died during a create
        await asyncio.to_thread(shutil.rmtree, sandbox_dir, ignore_errors=True)

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        return ResourceStats(**cgroups.Cgroup(handle.runtime_id).stats())

    async def reap(self, known: set[str]) -> list[str]:
        """Remove this owner's groups and directories that no known sandbox uses, and the
        groups of any owner whose sandbox directory (hence state dir) no longer exists."""
        removed: set[str] = set()
        for sid, group in cgroups.owned(self.owner_key).items():
            if sid not in known:
                await group.destroy()
                removed.add(sid)
        for d in list(self.sandboxes_dir.iterdir()):
            if d.is_dir() and d.name not in known:
                await self._remove_dir(d)
                removed.add(d.name)
        for rel in cgroups.all_rock_groups():
            group = cgroups.Cgroup(rel)
            run_dir = _shim_run_dir(group)
            if run_dir is not None and not os.path.isdir(run_dir):
                log.info("reaping %s: its sandbox directory %s is gone", rel, run_dir)
                await group.destroy()
                removed.add(rel.rsplit("/", 1)[1])
        if removed:
            log.info("reaped %d leftover sandboxes: %s", len(removed), sorted(removed))
        return sorted(removed)


# -- image root filesystems ----------------------------------------------------------------

_image_locks: dict[str, asyncio.Lock] = {}
_image_ids: dict[str, tuple[float, str, dict[str, str]]] = {}
IMAGE_ID_TTL = 30.0  # how long a tag -> image id answer is trusted before asking the engine again


async def image_rootfs(image: str, images_dir: Path) -> tuple[Path, dict[str, str]]:
    """An unpacked root filesystem for a tar file or a local Docker image, made once and cached
    under ``images_dir`` (keyed by the image id, so a rebuilt image is unpacked again)."""
    if os.path.isfile(image):
        st = os.stat(image)
        key = _safe(Path(image).name) + "-" + hashlib.sha256(f"{os.path.realpath(image)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        env: dict[str, str] = {}
    else:
        from rock.runtime.docker import inspect_image

        cached = _image_ids.get(image)
        if cached is None or time.monotonic() - cached[0] > IMAGE_ID_TTL:
            image_id, env = await asyncio.to_thread(inspect_image, image)
            _image_ids[image] = cached = (time.monotonic(), image_id, env)
        _, image_id, env = cached
        key = _safe(image) + "-" + image_id.split(":")[-1][:12]
    root = images_dir / key / "rootfs"
    if root.is_dir():
        return root, env
    async with _image_locks.setdefault(key, asyncio.Lock()):
        if not root.is_dir():
            await asyncio.to_thread(_unpack, image, root)
    return root, env


def _unpack(image: str, root: Path) -> None:
    """Unpack into a temporary sibling and rename it into place: readers never see half a tree."""
    t0 = time.perf_counter()
    tmp = root.parent / f".rootfs.{os.getpid()}.{time.monotonic_ns()}"
    tmp.mkdir(parents=True)
    try:
        tar = ["tar", "-x", "-p", "--numeric-owner", "-C", str(tmp), "-f"]
        if os.path.isfile(image):
            log.info("unpacking %s into %s", image, root)
            subprocess.run([*tar, image], check=True, capture_output=True)
        else:
            from rock.runtime.docker import export_image

            log.info("exporting docker image %s into %s (once per image)", image, root)
            # tar's complaints go to a file: a full stderr pipe would stall the export.
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen([*tar, "-"], stdin=subprocess.PIPE, stderr=err)
                try:
                    export_image(image, proc.stdin.write)
                finally:
                    proc.stdin.close()
                    proc.wait()
                if proc.returncode:
                    err.seek(0)
                    raise SandboxStartError(f"unpacking image {image} failed: {err.read()[-500:].decode(errors='replace')}")
        try:
            tmp.rename(root)
        except OSError:  # another worker finished first
            if not root.is_dir():
                raise
    except subprocess.CalledProcessError as exc:
        raise SandboxStartError(f"unpacking {image} failed: {exc.stderr.decode(errors='replace')[-500:]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("image %s ready at %s in %.1f s", image, root, time.perf_counter() - t0)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:64]


def _shim_run_dir(group: cgroups.Cgroup) -> str | None:
    """The host run directory named on the command line of the group's shim, if it has one."""
    for pid in group.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(argv) > 3 and argv[3] == SHIM_NAME:
            for i, arg in enumerate(argv[:-2]):
                if arg == "--bind" and argv[i + 2] == SANDBOX_RUN:
                    return argv[i + 1]
    return None
