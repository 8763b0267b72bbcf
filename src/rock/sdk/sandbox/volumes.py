"""Volumes from the SDK: a tenant's named directories with a size limit, that outlive sandboxes.

    from rock.sdk.sandbox import Sandbox, SandboxConfig, VolumeMount, Volumes

    volumes = Volumes(SandboxConfig())            # the admin and token of a config
    data = await volumes.create("data", size="100M")
    sandbox = Sandbox(SandboxConfig(volumes=[VolumeMount(name="data", path="/data")]))
    await sandbox.start()                         # /data is the volume, read-write
    ...
    await volumes.delete("data")                  # refused (409) while a running sandbox mounts it

``Sandbox.volumes`` is the same object for the sandbox's own admin and token. A write past the
size fails inside the sandbox with ENOSPC; another token's volume is a missing one (404).
"""

from __future__ import annotations

from typing import Any

from rock.actions.volumes import VolumeInfo, VolumeMount
from rock.sdk.sandbox.http import Http


class Volumes:
    """The volumes of the token a config carries, on its admin (``SandboxConfig`` or any config with
    ``base_url`` and ``headers()``), or on an ``Http`` client already made for one."""

    def __init__(self, config: Any = None, *, http: Http | None = None) -> None:
        if http is None:
            from rock.sdk.sandbox.config import SandboxConfig

            http = Http.for_config(config if config is not None else SandboxConfig())
        self._http = http

    async def create(self, name: str, size: int | str | None = None) -> VolumeInfo:
        """A new volume ``name`` of ``size`` (bytes, or '100M', '2G'; default 1 GiB)."""
        body = {"name": name, **({"size": size} if size is not None else {})}
        return VolumeInfo.model_validate(await self._http.post("/volumes", body))

    async def list(self) -> list[VolumeInfo]:
        """Your volumes, oldest first."""
        return [VolumeInfo.model_validate(v) for v in await self._http.get("/volumes", {})]

    async def get(self, name: str) -> VolumeInfo:
        """One of your volumes (``VolumeNotFound`` when you have none of that name)."""
        return VolumeInfo.model_validate(await self._http.get(f"/volumes/{name}", {}))

    async def delete(self, name: str) -> None:
        """Delete the volume and its files (``Conflict`` while a running sandbox mounts it)."""
        await self._http.delete(f"/volumes/{name}")

    async def aclose(self) -> None:
        """Close the connections of a client this object made."""
        await self._http.aclose()


__all__ = ["VolumeInfo", "VolumeMount", "Volumes"]
