"""The gVisor backend: sandboxes in Debian's ``runsc``, each with a kernel of its own (the sentry).

- ``runtime.py``: ``GvisorRuntime``, a sandbox as one runsc container over an OCI bundle we
  write; its pause, checkpoint and restore (full snapshots and forks);
- ``pids.py``: the process limit, kept by the sentry's own pids cgroup;
- ``statx.py``: the preloaded shim that lets coreutils 9 stat files under this runsc.
"""

from rock.runtime.gvisor.runtime import GvisorRuntime

__all__ = ["GvisorRuntime"]
