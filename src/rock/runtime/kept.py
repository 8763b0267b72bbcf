"""What a backend whose stopped sandboxes keep their files does through its ``kept`` part
(``BwrapKeptFiles``: the upper layer; ``DockerKeptContainers``: the container): stop, the bytes
written, and commit to an image, the same three calls on either."""

from __future__ import annotations

from typing import Protocol

from rock.runtime.spec import RuntimeHandle


class KeptFiles(Protocol):
    """A backend's part that keeps a stopped sandbox's files."""

    async def suspend(self, handle: RuntimeHandle) -> None:
        """Stop the sandbox, keeping its files."""

    async def disk_usage(self, handle: RuntimeHandle) -> int | None:
        """Bytes the sandbox has written (None where it cannot be read)."""

    async def commit(self, handle: RuntimeHandle, image_tag: str) -> str:
        """The sandbox's files as a new image ``image_tag``: its id."""


class KeepsFiles:
    """The ``Runtime`` methods that go to the backend's ``kept`` part. Put before ``Runtime``
    among the bases, so these win over its defaults."""

    kept: KeptFiles

    async def suspend(self, handle: RuntimeHandle) -> None:
        """Stop the sandbox, keeping its files (a later ``resume`` starts it on them)."""
        await self.kept.suspend(handle)

    async def disk_usage(self, handle: RuntimeHandle) -> int | None:
        """Bytes the sandbox has written."""
        return await self.kept.disk_usage(handle)

    async def commit(self, handle: RuntimeHandle, image_tag: str) -> str:
        """The sandbox's files as a new image ``image_tag``."""
        return await self.kept.commit(handle, image_tag)
