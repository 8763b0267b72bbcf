"""Streamed command output over the admin's WebSocket (``/stream``): used by ``arun(on_output=...)``
and by the interactive ``rock sandbox shell``."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from typing import Any, Callable
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

from rock.actions import Observation
from rock.client.envelope import error_from
from rock.errors import BadRequest
from rock.sdk.sandbox.parts import NOT_STARTED


def ws_url(sandbox: Any, session: str, create: bool = False) -> str:
    """The WebSocket URL of a session's stream (``create``: make the session if it is missing).
    ``sandbox``: a ``Sandbox`` or its ``SandboxContext`` (both have ``url``, ``sandbox_id`` and ``config``)."""
    if not sandbox.sandbox_id:
        raise BadRequest(NOT_STARTED)
    base: str = sandbox.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    query = {"sandbox_id": sandbox.sandbox_id, "session": session}
    if create:
        query["create"] = "true"
    return f"{base}/stream?{urlencode(query)}"


def raise_error(msg: dict[str, Any]) -> None:
    """Raise the SDK error type that a stream's error message names."""
    payload = {"message": msg.get("message"), "result": {"error_type": msg.get("error_type")}}
    raise error_from(int(msg.get("status_code", 500)), payload)


class Stream:
    """One streaming connection bound to a sandbox session."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    @classmethod
    async def open(cls, sandbox: Any, session: str, create: bool = False) -> "Stream":
        """Connect to a session's stream."""
        ws = await connect(ws_url(sandbox, session, create), additional_headers=sandbox.config.headers(),
                           max_size=None, compression=None)
        return cls(ws)

    async def run(self, command: str, timeout: float | None = None, idle_timeout: float | None = None) -> None:
        """Run ``command`` in the session; its output arrives as events."""
        await self.ws.send(json.dumps({"type": "run", "command": command, "timeout": timeout,
                                       "idle_timeout": idle_timeout}))

    async def send_input(self, data: str) -> None:
        """Type ``data`` into the session's terminal."""
        await self.ws.send(json.dumps({"type": "input", "data": data}))

    async def interrupt(self) -> None:
        """Interrupt the running command (Ctrl-C)."""
        await self.ws.send(json.dumps({"type": "interrupt"}))

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """Yield ("output", text) and ("result", Observation); errors raise."""
        async for raw in self.ws:
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "output":
                yield "output", msg.get("data", "")
            elif kind == "result":
                yield "result", Observation.model_validate(msg)
            elif kind == "error":
                raise_error(msg)

    async def close(self) -> None:
        """Close the connection (the session stays)."""
        await self.ws.close()


async def run_streamed(sandbox: Any, command: str, session: str, timeout: float | None,
                       on_output: Callable[[str], Any]) -> Observation:
    """Run ``command`` in ``session`` with each chunk of output passed to ``on_output`` as it comes; the final
    observation."""
    stream = await Stream.open(sandbox, session)
    try:
        await stream.run(command, timeout=timeout)
        async for kind, value in stream.events():
            if kind == "output":
                ret = on_output(value)
                if inspect.isawaitable(ret):
                    await ret
            else:
                observation: Observation = value
                return observation
        raise ConnectionError("the admin closed the stream before the command finished")
    finally:
        await stream.close()
