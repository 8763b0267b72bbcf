"""What the parts of the SDK's ``Sandbox`` (files, lifecycle, snapshots, background runs) read
from the object they are mixed into, declared once so that each part type-checks on its own.

Nothing here runs: ``Sandbox`` (``client.py``) sets the attributes and defines the methods; the
declarations only say which of them a part may use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rock.actions import Action, Command, CommandResponse, CreateBashSessionRequest, Observation
    from rock.actions import CreateBashSessionResponse
    import httpx

    from rock.client.http import Http
    from rock.sdk.sandbox.config import SandboxConfig


class SandboxParts:
    """The state and calls of a ``Sandbox`` that its parts use."""

    if TYPE_CHECKING:
        config: SandboxConfig

        def __init__(self, config: SandboxConfig | None = None, *,
                     transport: httpx.AsyncBaseTransport | None = None) -> None: ...

        _transport: httpx.AsyncBaseTransport | None
        _sandbox_id: str | None
        _host_name: str | None
        _host_ip: str | None

        @property
        def _http(self) -> Http: ...

        def _need_id(self) -> str: ...

        async def execute(self, command: Command) -> CommandResponse: ...

        async def create_session(self, request: CreateBashSessionRequest) -> CreateBashSessionResponse: ...

        async def run_in_session(self, action: Action) -> Observation: ...

        async def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes: ...

        async def delete(self) -> None: ...

        async def aclose(self) -> None: ...

        async def _quiet_close(self, session: str) -> None: ...
