"""Plain processes on the host: for development and macOS. There is NO isolation.

The agent runs from the rock source tree with the host interpreter, in the sandbox's own
work directory (its cwd and HOME), in a new session. Commands it starts get their own
sessions too, so a process-group kill is not enough; every process inherits an
environment marker naming the sandbox directory, and destroy kills whatever carries it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from rock.errors import SandboxStartError
from rock.runtime import cgroups
from rock.runtime.agent_boot import AGENT_SRC, READY_TIMEOUT, agent_argv, prepare_run_dir, sandbox_env
from rock.runtime.base import ResourceStats, Runtime, RuntimeHandle, SandboxSpec
from rock.runtime.processes import exit_future, exit_reason, process_alive, process_start_time
from rock.runtime.ready import wait_ready
from rock.runtime.snapshots import copy_frozen, seed_upper

log = logging.getLogger("rock.runtime.local")
MARKER = "ROCK_LOCAL_SANDBOX"
# Join the cgroup (the files to write 0 into, then "--"), then become the agent: every process of
# the sandbox is then in its group, which is what pause freezes. No limits are set on it.
JOIN = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'


def _cgroups_usable() -> bool:
    return os.geteuid() == 0 and os.path.isdir("/proc") and (cgroups.is_v2() or "freezer" in cgroups.v1_mounts())


class LocalRuntime(Runtime):
    """Sandboxes as plain processes on the host: no isolation, for development and macOS (it says so when
    chosen)."""

    name = "local"
    isolated = False
    directory_images = True  # the image names no filesystem: the host's is the sandbox's

    def __init__(self, settings, owner: str):
        super().__init__(settings, owner)
        log.warning(
            "local backend: sandboxes are plain host processes with NO isolation "
            "(no filesystem, network, memory, cpu or pids limits); use it only for development"
        )
        # boot.py imports its package by its directory name, so expose src/rock/agent as rock_agent.
        self.lib_dir = Path(settings.state_dir) / "lib"
        link = self.lib_dir / "rock_agent"
        if not link.exists():
            self.lib_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.lib_dir / f".rock_agent.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(AGENT_SRC)
            tmp.replace(link)  # atomic: concurrent workers never see a half-made link

    @classmethod
    def available(cls) -> str | None:
        """Always usable."""
        return None

    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        """Start the sandbox's agent as a host process in a work directory of its own: its handle."""
        t0 = time.perf_counter()
        run = prepare_run_dir(self.sandboxes_dir, spec.sandbox_id)
        sandbox_dir = run.parent
        work = sandbox_dir / "work"
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(work),
            MARKER: str(sandbox_dir),
            **sandbox_env(self.settings, spec),
        }
        argv = agent_argv(self.settings.host_python, lib=str(self.lib_dir), run=str(run))
        group = cgroups.Cgroup(f"{cgroups.PREFIX}/{self.owner_key}/{spec.sandbox_id}") if _cgroups_usable() else None
        pid, died = None, None
        try:
            if group is not None:  # for pause only (no limits: this backend promises none)
                group.create(None, None, None)
                argv = ["/bin/sh", "-c", JOIN, "rock-join", *group.join_files(), "--", *argv]
            work.mkdir(exist_ok=True)
            with open(sandbox_dir / "sandbox.log", "ab") as out:
                popen = subprocess.Popen(
                    argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True,
                )
            pid = popen.pid
            died = asyncio.ensure_future(exit_reason(exit_future(popen), sandbox_dir / "sandbox.log"))
            await wait_ready(run, died, READY_TIMEOUT)
        except BaseException:
            await self._kill(sandbox_dir, pid, None)
            if group is not None:
                await group.destroy()
            shutil.rmtree(sandbox_dir, ignore_errors=True)
            raise
        finally:
            if died is not None:
                died.cancel()
        log.info("sandbox %s ready in %.1f ms (pid %d)", spec.sandbox_id, (time.perf_counter() - t0) * 1e3, pid)
        return RuntimeHandle(
            sandbox_id=spec.sandbox_id, backend=self.name, runtime_id=str(pid), run_dir=str(run),
            spec=spec, pid=pid, extra={"start_time": str(process_start_time(pid)), **({"cgroup": group.rel} if group else {})},
        )

    async def alive(self, handle: RuntimeHandle) -> bool:
        """Whether the agent process still runs (the same process, by its start time)."""
        return handle.pid is not None and process_alive(handle.pid, handle.start_time)

    async def destroy(self, handle: RuntimeHandle) -> None:
        """End the sandbox's processes and remove its directory."""
        t0 = time.perf_counter()
        sandbox_dir = Path(handle.run_dir).parent
        group = cgroups.Cgroup(handle.extra["cgroup"]) if handle.extra.get("cgroup") else None
        if group is not None:
            group.kill()  # first: it also thaws a paused sandbox, whose frozen processes hold their SIGKILL
        await self._kill(sandbox_dir, handle.pid, handle.start_time)
        if group is not None:
            await group.destroy()
        await asyncio.to_thread(shutil.rmtree, sandbox_dir, ignore_errors=True)
        log.info("sandbox %s destroyed in %.1f ms", handle.sandbox_id, (time.perf_counter() - t0) * 1e3)

    async def stats(self, handle: RuntimeHandle) -> ResourceStats:
        """The cgroup's accounting where the sandbox has one (its limits are none)."""
        return ResourceStats(**cgroups.Cgroup(handle.extra["cgroup"]).stats()) if handle.extra.get("cgroup") \
            else ResourceStats()

    # -- pause, snapshots (the sandbox's files are its work directory) -----------------------

    def _group(self, handle: RuntimeHandle) -> cgroups.Cgroup:
        if not handle.extra.get("cgroup"):
            raise NotImplementedError("this local sandbox has no cgroup to freeze (pause needs root and a freezer "
                                      "cgroup on Linux)")
        return cgroups.Cgroup(handle.extra["cgroup"])

    async def _freeze(self, handle: RuntimeHandle) -> None:
        await self._group(handle).set_frozen(True)

    async def _thaw(self, handle: RuntimeHandle) -> None:
        await self._group(handle).set_frozen(False)

    async def _snapshot(self, handle: RuntimeHandle, snapshot, path: Path) -> None:
        await copy_frozen(self, handle, Path(handle.run_dir).parent / "work", snapshot, path)

    async def _start_from(self, snapshot, spec: SandboxSpec) -> RuntimeHandle:
        await seed_upper(self.snapshots.path(snapshot.name), self.sandboxes_dir / spec.sandbox_id / "work")
        return await self.create(spec)

    async def reap(self, known: set[str]) -> list[str]:
        """Remove what is left of this worker's sandboxes not in ``known``: their ids."""
        removed = []
        if _cgroups_usable():
            for sid, group in cgroups.owned(self.owner_key).items():
                if sid not in known:
                    await group.destroy()
        for d in sorted(self.sandboxes_dir.iterdir()):
            if d.is_dir() and d.name not in known:
                await self._kill(d, None, None)
                await asyncio.to_thread(shutil.rmtree, d, ignore_errors=True)
                removed.append(d.name)
        if removed:
            log.info("reaped %d leftover sandboxes: %s", len(removed), removed)
        return removed

    async def _kill(self, sandbox_dir: Path, pid: int | None, start_time: int | None, timeout: float = 10.0) -> None:
        """Kill the agent's group and every process carrying this sandbox's marker; wait until gone."""
        if pid is not None and process_alive(pid, start_time):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            pids = marked_processes(str(sandbox_dir))
            if pid is not None and process_alive(pid, start_time):
                pids.add(pid)
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise SandboxStartError(f"processes {sorted(pids)} of {sandbox_dir.name} survive SIGKILL")
            # SIGKILL is asynchronous; there is no event for "a process that is not our child exited".
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


def marked_processes(sandbox_dir: str) -> set[int]:
    """Pids of live processes whose environment carries ``ROCK_LOCAL_SANDBOX=<sandbox_dir>``."""
    needle = f"{MARKER}={sandbox_dir}\0".encode()
    found = set()
    if not os.path.isdir("/proc"):  # macOS: only the process group kill applies
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() and process_alive(int(entry), None):
                    found.add(int(entry))
        except OSError:
            continue
    return found
