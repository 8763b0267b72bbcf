"""Docker sandboxes that keep their files across a stop (ROCK's stop / restart / commit), and
their pause and snapshots.

A stopped sandbox is its stopped container: the writable layer stays, the processes end. Restart
starts the container again with a fresh run directory and waits for its agent as a create does.
A paused sandbox is a paused container (the engine's cgroup freezer); a filesystem snapshot is
its writable layer committed as an engine image (the engine pauses the container for the commit).
"""

from __future__ import annotations

import asyncio
import logging
import time

from docker.errors import APIError, NotFound

from rock.errors import Conflict, SandboxStartError
from rock.runtime.base import RuntimeHandle
from rock.runtime.docker.engine import call, client
from rock.runtime.docker.images import commit_container

log = logging.getLogger("rock.runtime.docker")


class DockerKeptContainers:
    """A docker sandbox's container kept across a stop, paused, or committed as a snapshot's
    image (its restart is ``DockerRuntime.resume``: a boot of the same container)."""

    def __init__(self, owner_key: str, default_image: str):
        self.owner_key = owner_key
        self.default_image = default_image

    async def suspend(self, handle: RuntimeHandle) -> None:
        # The container and its writable layer stay; its processes end (SIGTERM, then SIGKILL).
        """Stop the container's processes, keeping the container and its writable layer for a restart."""
        try:
            await call(client().stop, handle.runtime_id, timeout=2)
        except NotFound:
            raise SandboxStartError(f"the container of sandbox {handle.sandbox_id} is gone") from None

    async def disk_usage(self, handle: RuntimeHandle) -> int | None:
        """Bytes in the container's writable layer."""
        found = await call(client().containers, all=True, size=True, filters={"id": handle.runtime_id})
        return found[0].get("SizeRw") if found else None

    async def commit(self, handle: RuntimeHandle, image_tag: str) -> str:
        """The container as a new image ``image_tag`` on its base image."""
        base = handle.spec.image or self.default_image
        return await call(commit_container, handle.runtime_id, image_tag, base,
                                  handle.spec.labels.get("rock.owner", ""))

    async def pause(self, handle: RuntimeHandle) -> None:
        # runc gives up on a cgroup v2 freeze that has not settled after a few checks ("unable to
        # freeze"; it thaws the container again): 1 pause in 5-10 here, under load. Tried again.
        """Freeze the container (``docker pause``), trying again when runc gives up on a freeze that has
        not settled."""
        for attempt in range(1, 6):
            try:
                await call(client().pause, handle.runtime_id)
                return
            except APIError as exc:
                if attempt == 5 or "unable to freeze" not in str(exc):
                    raise
                await asyncio.sleep(0.02 * attempt)  # a back-off between retries, not a wait for an event

    async def unpause(self, handle: RuntimeHandle) -> None:
        """Thaw the container."""
        await call(client().unpause, handle.runtime_id)

    async def snapshot(self, handle: RuntimeHandle, snapshot, paused: bool) -> None:
        """Commit the container's writable layer as the snapshot's image (``paused``: it is paused
        already; else the engine pauses it for the commit itself)."""
        # One image per snapshot, named by owner key and snapshot name: `docker images` shows them.
        repo = f"rock-snapshot-{self.owner_key}"
        t0 = time.perf_counter()
        image = (await call(client().commit, handle.runtime_id, repository=repo, tag=snapshot.name,
                                    pause=not paused))["Id"]
        snapshot.took_ms = (time.perf_counter() - t0) * 1e3
        snapshot.extra["image"] = image
        snapshot.extra["tag"] = f"{repo}:{snapshot.name}"
        snapshot.size_bytes = await self.disk_usage(handle)

    async def delete_image(self, snapshot) -> None:
        """Remove the snapshot's image; Conflict while a container started from it exists."""
        if "tag" not in snapshot.extra:
            return
        try:
            await call(client().remove_image, snapshot.extra["tag"])
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code == 409:  # a container started from it still exists
                raise Conflict(f"snapshot {snapshot.name!r} is the image of sandboxes started from it; delete them "
                               "first") from None
            raise
