"""bwrap sandboxes that keep their files across a stop (ROCK's stop / restart / commit).

A stopped sandbox is its upper layer (``<sandbox dir>/upper``) and nothing else: no process, no
cgroup, no mount. Restart builds the sandbox again over the same upper layer; commit imports the
upper layer seen over its lower layer (the sandbox's root as it sees it) as a Docker image.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from rock.errors import BadRequest
from rock.runtime import cgroups
from rock.runtime.agent_boot import SANDBOX_LIB
from rock.runtime.base import RuntimeHandle
from rock.runtime.processes import kill_group
from rock.runtime.layers import layer_dirs
from rock.runtime.mounts import MS_RDONLY, detach, mount
from rock.runtime.snapshots import tree_bytes

log = logging.getLogger("rock.runtime.bwrap")

class BwrapKeptFiles:
    """A bwrap sandbox's files kept across a stop: its suspend, commit and disk usage (its restart
    is a create over the same upper layer, ``BwrapRuntime.resume``)."""

    async def suspend(self, handle: RuntimeHandle) -> None:
        # The processes and the cgroup go; <sandbox dir>/upper (the sandbox's files) stays.
        """Stop the sandbox and keep its files: its processes and cgroup go, its upper layer stays for a
        restart."""
        kill_group(handle.pid, handle.start_time)
        await cgroups.Cgroup(handle.runtime_id).destroy()
        detach(Path(handle.run_dir).parent / "root")

    async def disk_usage(self, handle: RuntimeHandle) -> int | None:
        """Bytes in the sandbox's upper layer (what it has written)."""
        return await asyncio.to_thread(tree_bytes, Path(handle.run_dir).parent / "upper")

    async def commit(self, handle: RuntimeHandle, image_tag: str) -> str:
        """The sandbox's files (its image root plus its upper layer) as a new image ``image_tag``; refused
        for a sandbox on the host's root."""
        lower = handle.extra.get("image_root", "/")
        if lower == "/":
            raise BadRequest(f"sandbox {handle.sandbox_id} runs on the host's root filesystem, which cannot become "
                             "an image; commit a sandbox started from an image")
        from rock.runtime.docker.images import import_tree

        sandbox_dir = Path(handle.run_dir).parent
        view = sandbox_dir / "commit-view"
        view.mkdir(exist_ok=True)
        # The sandbox's root as it sees it, read-only: its upper layer stacked on its lower one
        # (whiteouts and opaque directories apply), with no upper of its own.
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in (sandbox_dir / "upper", *layer_dirs(sandbox_dir), lower)]
        try:
            mount("overlay", str(view), "overlay", MS_RDONLY,
                   "lowerdir=" + ":".join(f"/proc/self/fd/{fd}" for fd in fds))
        finally:
            for fd in fds:
                os.close(fd)
        try:
            return await asyncio.to_thread(import_tree, str(view), image_tag, handle.spec.image,
                                           (SANDBOX_LIB.split("/")[1],), handle.spec.labels.get("rock.owner", ""))
        finally:
            detach(view)
            view.rmdir()

