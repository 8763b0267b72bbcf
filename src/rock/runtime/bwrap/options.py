"""bwrap's command-line options for one sandbox: its root, /proc, /dev, its cgroup, what of the
host it sees (read-only), its namespaces, capabilities and environment."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from rock.runtime import cgroups
from rock.runtime.agent_boot import AGENT_SRC, SANDBOX_CAPS, SANDBOX_LIB, SANDBOX_RUN
from rock.runtime.base import SandboxSpec
from rock.runtime.gpus import device_files

CAPS = tuple("CAP_" + cap for cap in SANDBOX_CAPS)
# Ports below 1024 are only harmless in the sandbox's own network namespace.
CAPS_PRIVATE_NET = ("CAP_NET_BIND_SERVICE",)
# Host directories that hold users', daemons' or other sandboxes' data: hidden behind a
# private tmpfs when the sandbox's root is the host's own.
MASKED = ("/tmp", "/var/tmp", "/run", "/root", "/home", "/var/lib/docker", "/var/lib/containerd", "/var/log")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Linux capability numbers (linux/capability.h) for the zygote's agent.
CAP_NUMBERS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
               "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
               "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31}


def sandbox_caps(spec: SandboxSpec) -> tuple[str, ...]:
    """The capabilities a sandbox keeps: the base set, plus what a private network needs when it has no
    host network."""
    return CAPS if spec.network else CAPS + CAPS_PRIVATE_NET


def bwrap_options(spec: SandboxSpec, merged: Path, run: Path, group: cgroups.Cgroup, lower: str, env: dict[str, str],
                  python_prefix: str, state_dir, die_with_parent: bool = True) -> list[str]:
    """bwrap's options, without the command. ``die_with_parent``: the sandbox ends with bwrap's
    parent (the worker's shim); not where that parent is the zygote, which exits with the worker."""
    host_root = lower == "/"
    # The sandbox's own /proc/sys read-only, as docker has it: root inside must not tune its
    # namespaces' kernel settings (the bind's source is the sandbox's new procfs).
    args = ["--bind", str(merged), "/", "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev",
            "--tmpfs", "/dev/shm"]
    for device in device_files(spec.gpu_ids) if spec.gpu_ids else ():
        args += ["--dev-bind", device, device]  # this sandbox's GPUs and the driver's control files
    if host_root:
        state_dir = os.path.realpath(state_dir)
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
        "--ro-bind", python_prefix, python_prefix,
        "--ro-bind", str(AGENT_SRC), f"{SANDBOX_LIB}/rock_agent",
        "--bind", str(run), SANDBOX_RUN,
        *(arg for path in spec.ro_binds for arg in ("--ro-bind", path, path)),
        *(arg for v in spec.volume_binds for arg in ("--ro-bind" if v.read_only else "--bind", v.source, v.target)),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", spec.sandbox_id[:63],
        *(["--die-with-parent"] if die_with_parent else []), "--new-session", "--chdir", "/",
    ]
    caps = sandbox_caps(spec)
    if not spec.network:
        args.append("--unshare-net")
    # As root, bwrap keeps every capability unless told otherwise. The bounding set stays
    # full, but no_new_privs (bwrap always sets it) stops exec from regaining anything.
    args += ["--cap-drop", "ALL"]
    for cap in caps:
        args += ["--cap-add", cap]
    args.append("--clearenv")
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


# bwrap's options by how many values follow them (the ones not named take none).
_BINDS = frozenset(("--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try", "--dev-bind-try"))
_TWO = _BINDS | {"--setenv", "--symlink", "--file", "--bind-data", "--ro-bind-data", "--chmod"}
_ONE = frozenset(("--proc", "--dev", "--tmpfs", "--mqueue", "--dir", "--remount-ro", "--hostname", "--chdir", "--cap-add",
                  "--cap-drop", "--unsetenv", "--info-fd", "--seccomp", "--add-seccomp-fd", "--uid", "--gid", "--perms",
                  "--size", "--lock-file", "--sync-fd", "--block-fd", "--userns-block-fd", "--json-status-fd",
                  "--exec-label", "--file-label", "--argv0", "--userns", "--userns2", "--pidns"))


def mounts_to_keep(options: list[str], merged: Path, bwrap: str,
                   resolved: dict[str, str] | None = None) -> dict[str, list[str]]:
    """What of the host's mount table the zygote keeps for bwrap (``rock.agent.mounttrim``):
    ``recursive``, the sources bwrap binds (with whatever is mounted below them), and ``needed``,
    those and the paths bwrap itself uses: the sandbox's root, the host's /proc (its view of
    itself) and /dev (the device nodes it binds), its own binary and its libraries. ``options``
    are bwrap's, without the command, so no command argument is read as one; values are consumed
    by arity, so an environment value that looks like an option is not.
    ``resolved``: sources whose real path the caller knows already (``real_paths``), not walked again."""
    known = resolved or {}
    sources, i = [], 0
    while i < len(options):
        arg = options[i]
        if arg in _BINDS:
            source = options[i + 1]
            sources.append(known.get(source) or os.path.realpath(source))
        i += 3 if arg in _TWO else 2 if arg in _ONE else 1
    # Resolved as the mount table writes them: a symlink in the state dir's path would otherwise
    # leave the sandbox's own root looking unneeded.
    return {"recursive": sources,
            "needed": [*sources, known.get(str(merged)) or os.path.realpath(merged), *_tool_paths(bwrap)]}


def real_paths(sandbox_dir: Path, names: tuple[str, ...], group: cgroups.Cgroup, fixed: tuple[str, ...]) -> dict[str, str]:
    """The real paths of a sandbox's own bind sources, without walking each of their components
    at every start (a realpath is an lstat per component: ~60 per start, on v1's five cgroup
    hierarchies): the folders above them are resolved once per worker, and what ROCK makes below
    them (the sandbox's folders, a cgroup's directories) holds no symlink. ``names``: folders
    of ``sandbox_dir``; ``fixed``: host paths that stay as they are while the worker runs (the
    interpreter's prefix, the agent's package)."""
    real_dir = os.path.join(_real_once(str(sandbox_dir.parent)), sandbox_dir.name)
    out = {str(sandbox_dir / name): os.path.join(real_dir, name) for name in names}
    for d in group.dirs.values():
        top = d.parents[len(Path(group.rel).parts) - 1]  # the hierarchy's mount point
        out[str(d)] = os.path.join(_real_once(str(top)), group.rel)
    out.update((path, _real_once(path)) for path in fixed)
    return out


@functools.lru_cache(maxsize=64)
def _real_once(path: str) -> str:
    return os.path.realpath(path)


@functools.cache
def _tool_paths(bwrap: str) -> tuple[str, ...]:
    """What bwrap uses of the host besides the binds, resolved once per worker."""
    tools = [bwrap, "/usr", "/lib", "/lib64", "/etc"]
    return ("/proc", "/dev", *(os.path.realpath(p) for p in tools if os.path.exists(p)))
