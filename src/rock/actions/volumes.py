"""Wire bodies of volumes (ours, beside ROCK's sandbox routes; E2B's shapes are its door's).

What the admin enforces is stated here, so the OpenAPI schema says it: a name of 1 to 63
letters, digits, '_', '.' or '-'; a size between 1 MiB and 64 GiB; a mount path that is
absolute (the admin also refuses /, /proc, /sys, /dev, /.rock and the agent's interpreter).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rock.actions.sizes import SIZE_PATTERN, parse_memory

VOLUME_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class _Ours(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolumeCreateRequest(_Ours):
    """``POST /volumes``: a new volume of the caller's."""

    name: str = Field(pattern=VOLUME_NAME_PATTERN, description="the volume's name, unique among yours")
    size: int | Annotated[str, StringConstraints(pattern=SIZE_PATTERN)] | None = Field(default=None, description=(
        "its size limit: bytes, or a size such as '100M' or '2G' (1 MiB to 64 GiB; default 1 GiB); "
        "writes past it fail with ENOSPC"))

    @field_validator("size")
    @classmethod
    def _size(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, bool):
            # a ValueError: pydantic reports it as the field's error
            raise ValueError("size: a number of bytes or a size such as '100M'")  # noqa: TRY004
        if isinstance(v, str):
            parse_memory(v)
        return v

    def size_bytes(self) -> int | None:
        """The size in bytes (None: the admin's default)."""
        return None if self.size is None else parse_memory(str(self.size))


class VolumeInfo(BaseModel):
    """A volume of yours."""

    volume_id: str
    name: str
    size_bytes: int
    created_at: float


class VolumeMount(_Ours):
    """A volume of yours mounted into a sandbox at start."""

    name: str = Field(pattern=VOLUME_NAME_PATTERN, description="the volume's name")
    path: str = Field(pattern=r"^/", max_length=1024, description=(
        "where it appears in the sandbox: an absolute path such as /data (not /, /proc, /sys, /dev, "
        "/.rock or the agent's interpreter)"))
    read_only: bool = False
