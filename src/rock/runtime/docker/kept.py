"""Docker sandboxes that keep their files across a stop (ROCK's stop / restart / commit), and
their pause and snapshots.

A stopped sandbox is its stopped container: the writable layer stays, the processes end. Restart
starts the container again with a fresh run directory and waits for its agent as a create does.
A paused sandbox is a paused container (the engine's cgroup freezer); a filesystem snapshot is
its writable layer committed as an engine image (the engine pauses the container for the commit).
A container restored to a snapshot committed from it is rolled back in place where the engine
keeps its layers as overlay2 directories: the snapshot's image is the container's image plus one
layer, the container's writable layer as it was, so the two upper layers over the same lower ones
are what ``rock.runtime.rollback`` plans from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from docker.errors import APIError, NotFound

from rock.errors import Conflict, SandboxStartError
from rock.runtime import rollback
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
        snapshot.extra["lineage"] = handle.runtime_id  # the container whose writable layer it is
        snapshot.extra["image"] = image
        snapshot.extra["tag"] = f"{repo}:{snapshot.name}"
        snapshot.size_bytes = await self.disk_usage(handle)

    @staticmethod
    def rolls_back(handle: RuntimeHandle, snapshot) -> bool:
        """A filesystem snapshot committed from this very container (a restore by a new start
        runs a new container, whose layers the snapshot's image does not share)."""
        return (snapshot.mode == "filesystem" and "image" in snapshot.extra
                and snapshot.extra.get("lineage") == handle.runtime_id)

    async def rollback_plan(self, snapshots, handle: RuntimeHandle, snapshot) -> rollback.Plan | None:
        """The plan from the container's writable layer to the snapshot image's top layer, over the
        layers both stand on; None where the engine's layers are not overlay2 directories that
        line up, or the planner cannot model them."""
        if not self.rolls_back(handle, snapshot):
            return None
        async with snapshots.in_use(snapshot):  # its image is not removed while it is read
            try:
                container = await call(client().inspect_container, handle.runtime_id)
                image = await call(client().inspect_image, snapshot.extra["image"])
            except NotFound:
                return None
            layers = _overlay_layers(container, image)
            if layers is None:
                log.info("sandbox %s: restoring %s by a new start: the engine's layers are not overlay2 directories "
                         "the snapshot's image shares", handle.sandbox_id, snapshot.name)
                return None
            return await rollback.plan_or_none(handle, snapshot, *layers, _mount_points(container))

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


def _overlay_layers(container: dict[str, Any], image: dict[str, Any]) -> tuple[Path, Path, list[Path]] | None:
    """(container's upper, image's top layer, the lower layers both views share, top first), or
    None. The container's lower layers are its init layer (the engine's stubs for /etc/hosts and
    the like) over its image's; the committed image's are that same image's."""
    drivers = container.get("GraphDriver") or {}, image.get("GraphDriver") or {}
    if any(d.get("Name") != "overlay2" for d in drivers):
        return None
    c, i = (d.get("Data") or {} for d in drivers)
    c_lower = [Path(p) for p in (c.get("LowerDir") or "").split(":") if p]
    i_lower = [Path(p) for p in (i.get("LowerDir") or "").split(":") if p]
    if not c.get("UpperDir") or not i.get("UpperDir") or not c_lower or c_lower[1:] != i_lower:
        return None
    return Path(c["UpperDir"]), Path(i["UpperDir"]), c_lower


def _mount_points(container: dict[str, Any]) -> frozenset[str]:
    """The container's mount targets, relative to its root: the engine makes the missing ones in
    the writable layer at each start (``/usr/sbin/docker-init`` for ``--init``), and what is
    mounted there is not the layers' to restore."""
    targets = [m.get("Destination", "") for m in container.get("Mounts") or []]
    targets += ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
    host_config = container.get("HostConfig") or {}
    targets += list(host_config.get("Tmpfs") or {})
    targets += [m.get("Target", "") for m in host_config.get("Mounts") or []]
    if host_config.get("Init"):
        targets.append("/usr/sbin/docker-init")
    return frozenset(t.strip("/") for t in targets if t.strip("/"))
