"""How a bwrap sandbox's processes are started: the shim, bwrap's command line, the agent.

Split from ``bwrap.py`` along the seam between starting a sandbox's processes (this module:
what the zygote or the worker runs, with which fds and arguments) and the sandbox's life
(``bwrap.py``: the create's order of steps, the files, cgroup and mounts it prepares, stop,
release, reap). ``BwrapRuntime`` mixes this in.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rock.runtime import cgroups
from rock.runtime.base import READY_NAME, SANDBOX_LIB, SANDBOX_RUN, SOCKET_NAME, SandboxSpec
from rock.runtime.bwrap_options import CAP_NUMBERS, DEFAULT_PATH, bwrap_options, sandbox_caps
from rock.runtime.seccomp import seccomp_program

# The shim: join the cgroup before bwrap exists, so everything bwrap starts is inside it.
# Arguments: the files to write 0 ("myself") into (Cgroup.join_files), "--", then bwrap's command line.
SHIM = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; "$@" & wait $!'
SHIM_NAME = "rock-shim"
# The shim when the zygote launches it: it has joined the cgroup and mounted the root already.
LAUNCH_SHIM = '"$@" & wait $!'
# bwrap's fds when the zygote launches it: its seccomp filter, its --info-fd, and the stub's two
# pipes (see rock/agent/zygote.py), at these numbers in bwrap and in the stub.
LAUNCH_SECCOMP_FD, LAUNCH_INFO_FD, UP_FD, HOLD_FD = 3, 4, 5, 6
# What bwrap runs when the agent comes from the zygote: say the sandbox is up, then wait for the
# EOF of the hold pipe, whose write end only the agent holds: the sandbox ends when the agent does.
STUB = f"echo up >&{UP_FD}; read _ <&{HOLD_FD}"


def _pipe_with(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


class Launch:
    """BwrapRuntime's process start-up (it provides ``bwrap``, ``python_prefix``, ``settings``,
    ``sandbox_env`` and ``zygote``)."""

    async def _start_from_zygote(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, lower: str,
                                 env: dict[str, str], command: list[str], stub: bool) -> dict:
        """Have the zygote start the shim, which mounts the root in a mount namespace of its own
        and starts bwrap, and then (when bwrap runs the stub) the agent; the zygote's answer:
        ``pid`` (the shim's), ``agent``, or ``error``."""
        sandbox_dir = run.parent
        program = seccomp_program()
        # One mount point for every sandbox: each launcher mounts its overlay there in a mount
        # namespace of its own, so no directory is made (and removed) per sandbox for it.
        merged = Path(self.settings.state_dir) / "mnt"
        argv = self._argv(spec, group, run, merged, lower, env, command, LAUNCH_SECCOMP_FD if program else None,
                          LAUNCH_INFO_FD if stub else None)
        launch = {
            "name": SHIM_NAME, "shim": LAUNCH_SHIM, "argv": argv, "log": str(sandbox_dir / "sandbox.log"),
            "join": group.join_files(),
            "root": {"lower": lower, "upper": str(sandbox_dir / "upper"), "work": str(sandbox_dir / "ovl-work"),
                     "merged": str(merged)},
            "seccomp": program.hex() if program else None, "seccomp_fd": LAUNCH_SECCOMP_FD,
            "info_fd": LAUNCH_INFO_FD, "up_fd": UP_FD, "hold_fd": HOLD_FD,
        }
        agent = self._agent_request(spec, group, run, env) if stub else None
        return await self.zygote.start_sandbox({"launch": launch, "agent": agent})

    def _spawn(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, lower: str, env: dict[str, str],
               command: list[str]) -> subprocess.Popen:
        """Start shim + bwrap from the worker (no zygote): the agent is bwrap's command."""
        program = seccomp_program()
        # bwrap reads the filter from an fd; a pipe holds far more than it needs
        seccomp_fd = _pipe_with(program) if program else None
        fds = [seccomp_fd] if seccomp_fd is not None else []
        argv = self._argv(spec, group, run, run.parent / "root", lower, env, command, seccomp_fd, None)
        try:
            with open(run.parent / "sandbox.log", "ab") as out:
                return subprocess.Popen(
                    ["/bin/sh", "-c", SHIM, SHIM_NAME, *group.join_files(), "--", *argv],
                    env={"PATH": DEFAULT_PATH},
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=fds,
                )
        finally:
            for fd in fds:
                os.close(fd)

    def _argv(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, merged: Path, lower: str,
              env: dict[str, str], command: list[str], seccomp_fd: int | None, info_fd: int | None) -> list[str]:
        """bwrap's command line, with the root mounted at ``merged``, reading its seccomp filter
        from ``seccomp_fd`` and reporting its child's pid on ``info_fd`` when given."""
        fd_args = (["--info-fd", str(info_fd)] if info_fd is not None else []) + \
                  (["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])
        return [self.bwrap, *fd_args, *self._bwrap_args(spec, merged, run, group, lower, env), *command]

    def _agent_request(self, spec: SandboxSpec, group: cgroups.Cgroup, run: Path, env: dict[str, str]) -> dict:
        """What the zygote needs to put an agent into this sandbox, as bwrap would have."""
        caps = 0
        for cap in sandbox_caps(spec):
            caps |= 1 << CAP_NUMBERS[cap]
        program = seccomp_program()
        return {
            "join": group.join_files(), "env": {**env, "PWD": "/"}, "log": str(run.parent / "sandbox.log"),
            "socket": f"{SANDBOX_RUN}/{SOCKET_NAME}", "ready": f"{SANDBOX_RUN}/{READY_NAME}",
            "lib": f"{SANDBOX_LIB}/rock_agent", "caps": caps,
            "seccomp": program.hex() if program else None,
        }

    def _env(self, spec: SandboxSpec, image_env: dict[str, str]) -> dict[str, str]:
        return {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **image_env, **self.sandbox_env(spec)}

    def _bwrap_args(self, spec: SandboxSpec, merged: Path, run: Path, group: cgroups.Cgroup, lower: str,
                    env: dict[str, str]) -> list[str]:
        return bwrap_options(spec, merged, run, group, lower, env, self.python_prefix, self.settings.state_dir)
