"""How a bwrap sandbox's processes are started: the shim, bwrap's command line, the agent.

Split from ``runtime.py`` along the seam between starting a sandbox's processes (this module:
what the zygote or the worker runs, with which fds and arguments, and reading back the pid
bwrap reports) and the sandbox's life (``runtime.py``: the create's order of steps, the
files, cgroup and mounts it prepares, stop, release, reap). ``BwrapRuntime`` has one ``Launcher``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from rock.config import Settings
from rock.errors import SandboxStartError
from rock.runtime import cgroups
from rock.runtime.agent_boot import (AGENT_SRC, READY_NAME, READY_TIMEOUT, SANDBOX_LIB, SANDBOX_RUN, SOCKET_NAME,
                                     sandbox_env)
from rock.runtime.base import SandboxSpec
from rock.runtime.bwrap.options import CAP_NUMBERS, DEFAULT_PATH, bwrap_options, mounts_to_keep, real_paths, sandbox_caps
from rock.runtime.layers import layer_dirs
from rock.runtime.seccomp import seccomp_program
from rock.runtime.zygote import Zygote

# The shim, where the worker starts bwrap itself (no zygote): join the cgroup before bwrap exists, so
# everything bwrap starts is inside it, then start bwrap and wait. It is bwrap's parent, not the
# worker: bwrap's --die-with-parent (its own and its sandbox init's) ends the sandbox with the shim.
# The zygote needs none: it spawns bwrap from inside the cgroup itself (rock_agent.zygote.spawn_bwrap).
# Arguments: the files to write 0 ("myself") into (Cgroup.join_files), "--", then bwrap's command line.
SHIM = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; "$@" & wait $!'
SHIM_NAME = "rock-shim"
LAUNCH_SECCOMP_FD, LAUNCH_INFO_FD = 3, 4
INFO_NAME = "bwrap-info"
# What bwrap runs when the agent comes from the zygote: say the sandbox is up, then wait on the
# hold FIFO, which the agent keeps open for writing: the sandbox ends when the agent does.
STUB = 'echo up > "$1"; read _ < "$2"'
UP_NAME, HOLD_NAME = "up", "hold"


def _pipe_with(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


class Launcher:
    """A bwrap sandbox's process start-up: the shim, bwrap's command line, the zygote's requests."""

    def __init__(self, settings: Settings, bwrap: str, python_prefix: str):
        self.settings = settings
        self.bwrap = bwrap
        self.python_prefix = python_prefix  # the host interpreter's prefix, bound read-only into sandboxes

    async def launch(self, zygote: Zygote, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, lower: str, env: dict[str, str],
                      command: list[str], info: bool) -> tuple[int, int | None]:
        """Have the zygote mount the root in a mount namespace of the sandbox's own and start bwrap
        there, in the sandbox's cgroup; bwrap's pid, and with ``info`` the FIFO bwrap reports its
        child's pid on.

        bwrap's parent is then the zygote, which exits with the worker: so no --die-with-parent,
        and the sandbox's pid 1 is killed by name on release (``BwrapRuntime._kill``)."""
        sandbox_dir = run.parent
        program = seccomp_program()
        options = self._bwrap_args(spec, run.parent / "root", run, group, lower, env, die_with_parent=False)
        argv = self._argv(options, command, LAUNCH_SECCOMP_FD if program else None, LAUNCH_INFO_FD if info else None)
        info_r = fifo = None
        if info:  # made by _prepare_root
            fifo = sandbox_dir / INFO_NAME
            info_r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        request = {
            "argv": argv, "join": group.join_files(), "log": str(sandbox_dir / "sandbox.log"),
            "root": {"lower": lower, "layers": [str(p) for p in layer_dirs(sandbox_dir)],
                     "upper": str(sandbox_dir / "upper"), "work": str(sandbox_dir / "ovl-work"),
                     "merged": str(sandbox_dir / "root")},
            "seccomp": program.hex() if program else None, "seccomp_fd": LAUNCH_SECCOMP_FD,
            "info": str(fifo) if fifo else None, "info_fd": LAUNCH_INFO_FD,
            "keep": mounts_to_keep(options, sandbox_dir / "root", self.bwrap,
                                   real_paths(sandbox_dir, ("root", run.name), group, (self.python_prefix, str(AGENT_SRC)))),
        }
        try:
            return await zygote.launch(request), info_r
        except BaseException:
            if info_r is not None:
                os.close(info_r)
            raise

    def spawn(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, lower: str, env: dict[str, str],
               command: list[str], info: bool) -> tuple[subprocess.Popen, int | None]:
        """Start the shim, which starts bwrap; with ``info``, also return the pipe bwrap reports its
        child's pid on."""
        program = seccomp_program()
        # bwrap reads the filter from an fd; a pipe holds far more than it needs
        seccomp_fd = _pipe_with(program) if program else None
        info_r, info_w = os.pipe() if info else (None, None)
        fds = [fd for fd in (seccomp_fd, info_w) if fd is not None]
        options = self._bwrap_args(spec, run.parent / "root", run, group, lower, env)
        argv = self._argv(options, command, seccomp_fd, info_w)
        try:
            with open(run.parent / "sandbox.log", "ab") as out:
                popen = subprocess.Popen(
                    self._shim(group, argv),
                    env={"PATH": DEFAULT_PATH},
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=fds,
                )
        except BaseException:
            if info_r is not None:
                os.close(info_r)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return popen, info_r

    @staticmethod
    def _shim(group: cgroups.Cgroup, argv: list[str]) -> list[str]:
        """The shim's command line: it joins ``group``, then starts ``argv`` (bwrap's) and waits."""
        return ["/bin/sh", "-c", SHIM, SHIM_NAME, *group.join_files(), "--", *argv]

    def _argv(self, options: list[str], command: list[str], seccomp_fd: int | None, info_fd: int | None) -> list[str]:
        """bwrap's command line, reading its seccomp filter from ``seccomp_fd`` and reporting its
        child's pid on ``info_fd`` when given."""
        fd_args = (["--info-fd", str(info_fd)] if info_fd is not None else []) + \
                  (["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])
        return [self.bwrap, *fd_args, *options, *command]

    def agent_request(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, env: dict[str, str],
                       pid: int) -> dict:
        """What the zygote needs to put an agent into this sandbox, as bwrap would have."""
        caps = 0
        for cap in sandbox_caps(spec):
            caps |= 1 << CAP_NUMBERS[cap]
        program = seccomp_program()
        return {
            "pid": pid, "join": group.join_files(), "env": {**env, "PWD": "/"}, "log": str(run.parent / "sandbox.log"),
            "up": str(run / UP_NAME), "socket": f"{SANDBOX_RUN}/{SOCKET_NAME}", "ready": f"{SANDBOX_RUN}/{READY_NAME}",
            "hold": f"{SANDBOX_RUN}/{HOLD_NAME}", "lib": f"{SANDBOX_LIB}/rock_agent", "caps": caps,
            "seccomp": program.hex() if program else None,
        }

    def env(self, spec: SandboxSpec, image_env: dict[str, str]) -> dict[str, str]:
        """The environment the sandbox's processes start with: defaults, then the image's, then the
        sandbox's own."""
        return {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **image_env, **sandbox_env(self.settings, spec)}

    def _bwrap_args(self, spec: SandboxSpec, merged: Path, run: Path, group: cgroups.Cgroup, lower: str,
                    env: dict[str, str], die_with_parent: bool = True) -> list[str]:
        return bwrap_options(spec, merged, run, group, lower, env, self.python_prefix, self.settings.state_dir,
                             die_with_parent)


async def child_pid(info_fd: int, died: asyncio.Future) -> int:
    """The pid (on the host) of bwrap's first process in the sandbox, from its --info-fd: bwrap
    writes it right after the clone, before it builds the sandbox. (bwrap, or the shim, keeps a
    copy of the pipe's write end, so the JSON's end is the end of the message, not EOF.)"""
    loop = asyncio.get_running_loop()
    got: asyncio.Future = loop.create_future()
    buf = bytearray()

    def on_readable() -> None:
        try:
            data = os.read(info_fd, 4096)
        except BlockingIOError:
            return
        buf.extend(data)
        try:
            info = json.loads(buf)
        except ValueError:
            if data:
                return
            info = {}
        if not got.done():
            got.set_result(info)

    loop.add_reader(info_fd, on_readable)
    try:
        await asyncio.wait({got, died}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(info_fd)
    if got.done() and isinstance(got.result().get("child-pid"), int):
        return got.result()["child-pid"]
    reason = died.result() if died.done() else f"got {bytes(buf)!r}"
    raise SandboxStartError(f"bwrap did not report its sandbox's first process: {reason}")
