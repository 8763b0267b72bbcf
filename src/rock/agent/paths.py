"""Where the agent keeps its own files (rc files, background process logs).

The run directory the agent's socket lives in: always writable, also in read-only images, and
private to the sandbox. Set once by ``server.main``.
"""

from . import fastos as os

run_dir = ["/tmp"]


def private(name):
    """The agent's private folder ``name`` in its run directory (made, mode 700, on first use)."""
    path = os.join(run_dir[0], name)
    if not os.isdir(path):
        os.makedirs(path, 0o700)
    return path
