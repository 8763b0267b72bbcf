"""Sandboxes from bubblewrap namespaces, an overlayfs root and cgroup limits. No daemon.

Process tree of one sandbox (all of it inside the sandbox's cgroup):

    bwrap            spawned by the agent zygote from inside the sandbox's cgroup, in a mount
      └ init         namespace holding the sandbox's root; detached (own session), so a worker
          └ stub     restart does not touch it. init: pid 1 of the sandbox's pid namespace
    agent            (bwrap's reaper); the agent is forked by the zygote into that namespace and
                     holds the stub's FIFO. Release kills bwrap's group and init's (``_kill``).

Root filesystem: an overlay whose lower layer is the host root (read-only, with private
tmpfs over the places where the host keeps its own and other sandboxes' data) or an image
rootfs, and whose upper layer is ``<state_dir>/sandboxes/<id>/upper``: the sandbox's files
survive it and no other sandbox sees them. bubblewrap 0.8 cannot mount overlays itself, so
the agent zygote mounts it in a mount namespace made for the sandbox, starts bwrap there and
leaves it, and bwrap binds it as ``/``. The host's
mount table never holds it: a burst of starts does not make every bwrap copy and read a
table of everyone's roots (that was half of bwrap's time in a 100-start burst), and the
kernel drops it with the sandbox's last process. The zygote also detaches from that namespace
every host mount bwrap does not build from (``rock.agent.mounttrim``): bwrap reads the whole
table after each of its mounts, and a container engine beside it adds two per container.
Without the zygote, the worker starts a shim (a shell that joins the cgroup, starts bwrap
with --die-with-parent and waits), mounts the root on the host and detaches it once the agent
is up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from rock.errors import SandboxStartError
from rock.runtime import cgroups
from rock.runtime.agent_boot import READY_TIMEOUT, SANDBOX_LIB, SANDBOX_RUN, agent_argv, prepare_run_dir
from rock.runtime.base import ResourceStats, Runtime, RuntimeHandle, SandboxSpec
from rock.runtime.kept import KeepsFiles
from rock.runtime.host_policy import host_network_refused, unusable_reason
from rock.runtime.processes import (
    exit_future,
    exit_reason,
    kill_group,
    pid_exit_future,
    process_alive,
    process_start_time,
)
from rock.runtime.ready import ReadyFifo
from rock.runtime.bwrap.kept import BwrapKeptFiles
from rock.runtime.bwrap.launch import HOLD_NAME, INFO_NAME, STUB, UP_NAME, Launcher, child_pid
from rock.runtime.image_root import image_lower, image_python, mount_points, resolves_to_file
from rock.runtime import rollback
from rock.runtime.layers import keep_layers, seed_layers
from rock.runtime.snapshots import copy_frozen
from rock.runtime.mounts import detach as _detach
from rock.runtime.mounts import mount_overlay
from rock.runtime.teardown import Teardown, reap_unknown, remove_sandbox_dir
from rock.runtime.zygote import Zygote

log = logging.getLogger("rock.runtime.bwrap")

class _Running(SandboxStartError):
    """A create of an id whose sandbox still runs."""


class BwrapRuntime(rollback.RollsBackInPlace, KeepsFiles, Runtime):
    """Sandboxes of bubblewrap namespaces over an overlay root, in cgroups of their own."""

    name = "bwrap"
    keeps_files = True
    egress = True
    host_network = True  # bwrap's network=true shares the host's namespace (host_policy.host_network_refused)
    directory_images = True
    passes_fds = True  # the agent shares the host's kernel (rollback.RollsBackInPlace)

    def __init__(self, settings, owner: str):
        super().__init__(settings, owner)
        self.launcher = Launcher(settings, shutil.which("bwrap") or "bwrap", str(Path(settings.host_python).parent.parent))
        self.kept = BwrapKeptFiles()  # stop / restart / commit over the sandbox's upper layer
        self.zygote = Zygote(settings.host_python) if settings.bwrap_zygote else None
        self.teardown = Teardown()  # deleted sandboxes' cgroups and files, removed off the event loop

    @classmethod
    def available(cls) -> str | None:
        """None when bwrap can run here, else why not (not installed, not root)."""
        return unusable_reason("bwrap", "bubblewrap (bwrap) is not installed",
                               "the bwrap backend mounts overlays and writes cgroups: it needs root")

    # -- create ---------------------------------------------------------------------------

    async def create(self, spec: SandboxSpec, kept_lower: str | None = None, resuming: bool = False) -> RuntimeHandle:
        """``resuming``: a restart over kept files (made over ``kept_lower``), which a failure keeps."""
        t0 = time.perf_counter()
        sid = spec.sandbox_id
        if spec.runtime:
            raise SandboxStartError("engine runtimes (kata) need the docker backend; this one is bwrap")
        if spec.network and not self.settings.allow_host_network:  # the admin refuses it first
            raise host_network_refused()
        lower, image_env = await image_lower(spec, self.settings)
        if kept_lower and kept_lower != lower and os.path.isdir(kept_lower):
            lower = kept_lower  # the tag moved since; the files were written over the old root
        group = cgroups.Cgroup(f"{cgroups.PREFIX}/{self.owner_key}/{sid}")
        await self.teardown.wait(self.sandboxes_dir / sid)  # the same id deleted a moment ago
        run = self.sandboxes_dir / sid / "run"
        handle = RuntimeHandle(sandbox_id=sid, backend=self.name, runtime_id=group.rel, run_dir=str(run), spec=spec,
                               extra={"image_root": lower, "lineage": uuid.uuid4().hex})
        merged = run.parent / "root"
        watch: list[asyncio.Future] = []
        launched = self.zygote is not None  # else the shim comes from here and the root is mounted on the host
        zygote = self.zygote is not None and resolves_to_file(lower, "/bin/sh")
        fifo = None
        try:
            # File system and cgroup work blocks for a millisecond or more per call under a burst
            # (ext4 inode allocation, cgroup mkdir): in a thread, not on the event loop all starts
            # share; one trip there for all of it.
            fifo = await asyncio.to_thread(self._prepare, spec, group, run, lower, mount=not launched, stub=zygote)
            t_setup = time.perf_counter()
            env = self.launcher.env(spec, image_env)
            if zygote:
                command = ["/bin/sh", "-c", STUB, "rock-stub", f"{SANDBOX_RUN}/{UP_NAME}", f"{SANDBOX_RUN}/{HOLD_NAME}"]
            else:  # the host root has this very interpreter; an image may have its own python3
                command = agent_argv(self.settings.host_python if lower == "/" else
                                          image_python(run.parent / "upper", lower, env["PATH"]))
            if launched:
                handle.pid, info_fd = await self.launcher.launch(self.zygote, spec, group, run, lower, env, command, info=zygote)
                exited = pid_exit_future(handle.pid)
            else:
                popen, info_fd = self.launcher.spawn(spec, group, run, lower, env, command, info=zygote)
                handle.pid, exited = popen.pid, exit_future(popen)
            handle.extra["start_time"] = str(process_start_time(handle.pid))
            died = asyncio.ensure_future(exit_reason(exited, run.parent / "sandbox.log"))
            watch = [died]
            if info_fd is not None:
                try:
                    pid = await child_pid(info_fd, died)
                finally:
                    os.close(info_fd)
                handle.extra["init"] = f"{pid}:{process_start_time(pid)}"  # see _kill
                try:
                    agent = await self.zygote.spawn(self.launcher.agent_request(spec, group, run, env, pid))
                except SandboxStartError:
                    # bwrap may have given up (a missing device, a bad mount) before the fork: its
                    # pid namespace is then gone and the fork fails with ENOMEM, which says nothing.
                    done, _ = await asyncio.wait([died], timeout=1.0)
                    if done:
                        raise SandboxStartError(f"sandbox exited before its agent was ready: {died.result()}") from None
                    raise
                # Not bwrap's child: if it fails before holding the stub's FIFO, only it exits.
                watch.append(asyncio.ensure_future(exit_reason(pid_exit_future(agent), run.parent / "sandbox.log",
                                                               "the agent")))
            await fifo.wait(watch, READY_TIMEOUT)
        except _Running:
            raise  # another sandbox's: nothing here is ours to remove
        except BaseException:
            await (self.suspend(handle) if resuming else self.destroy(handle))
            raise
        finally:
            if fifo is not None:
                fifo.close()
            for future in watch:
                future.cancel()
            if not launched and fifo is not None:
                _detach(merged)  # the sandbox holds its own reference to the overlay now
        log.info("sandbox %s ready in %.1f ms (setup %.1f ms, pid %d%s)", sid, (time.perf_counter() - t0) * 1e3,
                 (t_setup - t0) * 1e3, handle.pid, ", agent from the zygote" if zygote else "")
        return handle

    async def start(self) -> None:
        """Start the agent zygote; when it cannot start, sandboxes start their agent with Python instead."""
        if self.zygote is not None:
            try:
                await self.zygote.start()
            except SandboxStartError as exc:
                log.warning("%s; bwrap sandboxes start their agent with Python instead", exc)
                self.zygote = None

    async def close(self) -> None:
        """Stop the zygote and finish removing deleted sandboxes."""
        if self.zygote is not None:
            await self.zygote.close()
        await self._drain()

    async def _drain(self) -> None:
        if len(self.teardown):
            try:
                await asyncio.wait_for(self.teardown.drain(), 30)
            except asyncio.TimeoutError:
                log.warning("%d deleted sandbox(es) not removed yet; the next start's reap removes them",
                            len(self.teardown))

    def _prepare(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, lower: str, mount: bool,
                 stub: bool) -> ReadyFifo:
        """The run directory (with the ready FIFO, opened), the cgroup, the root's mount points."""
        if group.pids():
            raise _Running(f"sandbox {spec.sandbox_id} is already running")
        prepare_run_dir(self.sandboxes_dir, spec.sandbox_id)
        fifo = ReadyFifo(run)
        try:
            self._prepare_root(spec, group, run, lower, mount, stub)
        except BaseException:
            fifo.close()
            raise
        return fifo

    def _prepare_root(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, lower: str, mount: bool,
                      stub: bool) -> None:
        group.create(spec.memory_bytes, spec.cpus, spec.pids_limit)
        mount_points(lower, (self.launcher.python_prefix, f"{SANDBOX_LIB}/rock_agent", SANDBOX_RUN))
        if mount:
            mount_overlay(run.parent, lower)
        if stub:
            for name in (UP_NAME, HOLD_NAME):
                os.mkfifo(run / name, 0o600)
            if not mount:  # launched by the zygote: bwrap's --info-fd is a FIFO, outside the run dir
                info = run.parent / INFO_NAME
                info.unlink(missing_ok=True)  # a restart of a stopped sandbox reuses its directory
                os.mkfifo(info, 0o600)

    # -- lifecycle ------------------------------------------------------------------------

    async def alive(self, handle: RuntimeHandle) -> bool:
        """Whether bwrap (or its shim) and the sandbox's pid 1 still run (the same processes, by
        their start times). bwrap exits as soon as its command has, while the pid 1 it leaves may
        still be taking down the rest of the sandbox; bwrap's parent, the zygote, cannot take the
        sandbox down with it if bwrap alone is killed, so the pid 1 is asked too."""
        init = _init(handle)
        return (handle.pid is not None and process_alive(handle.pid, handle.start_time)
                and (init is None or process_alive(*init)))

    async def destroy(self, handle: RuntimeHandle) -> None:
        """Kill and remove everything of the sandbox before returning."""
        t0 = time.perf_counter()
        self._kill(handle)
        await cgroups.Cgroup(handle.runtime_id).destroy()
        await remove_sandbox_dir(Path(handle.run_dir).parent)
        log.info("sandbox %s destroyed in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)

    async def release(self, handle: RuntimeHandle) -> None:
        """Kill the sandbox's processes now; its cgroup (removable once the kernel has let the
        killed processes go) and its directory go in the teardown thread."""
        group = cgroups.Cgroup(handle.runtime_id)
        if not self._kill(handle):
            group.kill()  # neither bwrap nor init to take the sandbox down with them: every member by name
        # (With the sandbox's pid 1 killed, the kernel kills all else in its pid namespace, the
        # agent too; the teardown kills the group again, to be sure.)
        self.teardown.submit(group, Path(handle.run_dir).parent)

    @staticmethod
    def _kill(handle: RuntimeHandle) -> bool:
        """SIGKILL the process group of bwrap (or of the shim, and its bwrap) and that of the
        sandbox's pid 1, which bwrap's --new-session put in a group of its own; False when neither
        was running. Without the zygote, the shim's bwrap has --die-with-parent, and no init is
        recorded; from the zygote, bwrap's parent is the zygote, so nothing dies with it."""
        killed = kill_group(handle.pid, handle.start_time)
        init = _init(handle)
        return (init is not None and kill_group(*init)) or killed

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        """The sandbox's use, read from its cgroup."""
        return ResourceStats(**cgroups.Cgroup(handle.runtime_id).stats())

    # -- kept files: stop, restart, commit ------------------------------------------------

    async def resume(self, handle: RuntimeHandle) -> RuntimeHandle:
        """Start a stopped sandbox again on its kept files: a new handle."""
        t0 = time.perf_counter()
        new = await self.create(handle.spec, kept_lower=handle.extra.get("image_root"), resuming=True)
        log.info("sandbox %s restarted in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)
        return new

    # -- pause, snapshots -----------------------------------------------------------------

    async def _freeze(self, handle: RuntimeHandle) -> None:
        await cgroups.Cgroup(handle.runtime_id).set_frozen(True)

    async def _thaw(self, handle: RuntimeHandle) -> None:
        await cgroups.Cgroup(handle.runtime_id).set_frozen(False)

    async def _snapshot(self, handle: RuntimeHandle, snapshot, path: Path) -> None:
        """The overlay's upper layer, copied while the sandbox is frozen; the layers it stands on
        linked (they never change); the image root named."""
        snapshot.extra["image_root"] = handle.extra.get("image_root", "/")
        snapshot.extra["lineage"] = handle.extra.get("lineage", "")
        sandbox_dir = Path(handle.run_dir).parent
        await copy_frozen(self, handle, sandbox_dir / "upper", snapshot, path)
        await keep_layers(sandbox_dir, path)

    async def _start_from(self, snapshot, spec: SandboxSpec) -> RuntimeHandle:
        """A sandbox standing on the snapshot's layers (linked, not copied: ``rock.runtime.layers``)."""
        await seed_layers(self.snapshots.path(snapshot.name), self.sandboxes_dir / spec.sandbox_id)
        return await self.create(spec, kept_lower=snapshot.extra.get("image_root"))

    async def reap(self, known: set[str]) -> list[str]:
        """Remove this owner's groups and directories that no known sandbox uses, and the
        groups of any owner whose sandbox directory (hence state dir) no longer exists."""
        await self._drain()  # what was deleted a moment ago is not a leftover
        removed = await reap_unknown(self.owner_key, self.sandboxes_dir, known)
        for rel in cgroups.all_rock_groups():
            group = cgroups.Cgroup(rel)
            run_dir = _bound_run_dir(group)
            if run_dir is not None and not os.path.isdir(run_dir):
                log.info("reaping %s: its sandbox directory %s is gone", rel, run_dir)
                await group.destroy()
                removed.add(rel.rsplit("/", 1)[1])
        if removed:
            log.info("reaped %d leftover sandboxes: %s", len(removed), sorted(removed))
        return sorted(removed)


def _init(handle: RuntimeHandle) -> tuple[int, int | None] | None:
    """The sandbox's pid 1 on the host and its start time, where its create recorded them."""
    pid, _, start = handle.extra.get("init", "").partition(":")
    return (int(pid), int(start) if start.isdigit() else None) if pid.isdigit() else None


def _bound_run_dir(group: cgroups.Cgroup) -> str | None:
    """The host run directory that the group's bwrap binds into its sandbox, read off its command line."""
    for pid in group.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-2]):
            if arg == "--bind" and argv[i + 2] == SANDBOX_RUN:
                return argv[i + 1]
    return None
