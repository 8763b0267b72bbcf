"""What the SDK's clients of a token's named objects on the admin share (``Secrets``,
``Volumes``): the admin and token they talk to, and ``list``, ``get`` and ``delete`` by name
under one route. Another token's object is a missing one (404), as on the admin."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from rock.sdk.sandbox.http import Http

InfoT = TypeVar("InfoT", bound=BaseModel)


class Named(Generic[InfoT]):
    """The named objects of the token a config carries, on its admin (``SandboxConfig`` or any
    config with ``base_url`` and ``headers()``), or on an ``Http`` client already made for one."""

    route: ClassVar[str]  # the objects' route: ``/secrets``, ``/volumes``
    info: ClassVar[type[BaseModel]]  # what the admin answers for one

    def __init__(self, config: Any = None, *, http: Http | None = None) -> None:
        if http is None:
            from rock.sdk.sandbox.config import SandboxConfig

            http = Http.for_config(config if config is not None else SandboxConfig())
        self._http = http

    def _one(self, payload: Any) -> InfoT:
        made: InfoT = self.info.model_validate(payload)  # type: ignore[assignment]
        return made

    def _at(self, name: str) -> str:
        return f"{self.route}/{quote(name, safe='')}"

    async def list(self) -> list[InfoT]:
        """Yours, oldest first (a secret's value is never among what is read)."""
        return [self._one(item) for item in await self._http.get(self.route, {})]

    async def get(self, name: str) -> InfoT:
        """One of yours by name (``SecretNotFound`` / ``VolumeNotFound`` when you have none of that name)."""
        return self._one(await self._http.get(self._at(name), {}))

    async def delete(self, name: str) -> None:
        """Delete it (a volume: refused with ``Conflict`` while a running sandbox mounts it; a
        secret: the relay stops sending it at once)."""
        await self._http.delete(self._at(name))

    async def aclose(self) -> None:
        """Close the connections of a client this object made."""
        await self._http.aclose()
