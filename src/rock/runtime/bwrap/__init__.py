"""The bwrap backend: sandboxes from bubblewrap namespaces over an overlayfs root, no daemon.

- ``runtime.py``: ``BwrapRuntime``, a sandbox's life: the create's order of steps, its files,
  cgroup and mounts, stop, release, reap;
- ``launch.py``: how its processes start (the shim, bwrap's command line, the agent);
- ``options.py``: bwrap's command-line options for one sandbox (also gVisor's PATH);
- ``kept.py``: a sandbox's files kept across a stop, and its commit as an image.
"""

from rock.runtime.bwrap.runtime import BwrapRuntime

__all__ = ["BwrapRuntime"]
