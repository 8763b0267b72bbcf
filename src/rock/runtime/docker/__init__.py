"""The docker backend: sandboxes as containers of the local Docker engine.

- ``runtime.py``: ``DockerRuntime``, a sandbox's create, stop and removal;
- ``kept.py``: a container kept across a stop, paused, or committed as a snapshot's image;
- ``network.py``: the bridge sandboxes with a network join, fenced off the host and each other;
- ``images.py``: building, committing, pushing and removing images, and the tags callers may claim;
- ``build_context.py``: a caller's build context made safe for the engine to build;
- ``rootfs.py``: an image exported as a root filesystem, for the backends without an engine;
- ``engine.py``: the one engine client and the threads its blocking calls run on.
"""

from rock.runtime.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime"]
