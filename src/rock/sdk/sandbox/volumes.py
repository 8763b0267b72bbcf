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

from rock.actions.volumes import VolumeInfo, VolumeMount
from rock.sdk.sandbox.named import Named


class Volumes(Named[VolumeInfo]):
    """The volumes of the token a config carries, on its admin (``SandboxConfig`` or any config with
    ``base_url`` and ``headers()``), or on an ``Http`` client already made for one. ``list``, ``get``
    and ``delete`` by name come from ``Named``; a volume mounted by a running sandbox is not deleted."""

    route = "/volumes"
    info = VolumeInfo

    async def create(self, name: str, size: int | str | None = None) -> VolumeInfo:
        """A new volume ``name`` of ``size`` (bytes, or '100M', '2G'; default 1 GiB)."""
        body = {"name": name, **({"size": size} if size is not None else {})}
        return self._one(await self._http.post(self.route, body))


__all__ = ["VolumeInfo", "VolumeMount", "Volumes"]
