"""uvicorn's httptools protocol, sending a response's head and body in one write.

uvicorn writes a response's head (``http.response.start``) and its body as two
``transport.write`` calls; on a TCP socket that is two sends and two segments, and a client
that reads between them wakes twice for one answer. Nearly every answer here is one small JSON
body sent right after its head (commands, starts, env steps), so the head is held until the
next write of the same connection and goes out with it; a head with nothing after it in the
same turn of the event loop (an empty or streamed body) goes out on its own at the end of that
turn. Nothing else changes: bodies, streams, WebSocket upgrades and closes pass straight through.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/1.1 "
_UPGRADE = b"HTTP/1.1 101 "


class _HeldHead:
    """The connection's transport, holding a response head until the write that follows it."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_HEAD) and data.endswith(b"\r\n\r\n") and not data.startswith(_UPGRADE):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, parts) -> None:
        self.write(b"".join(parts))

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str):  # everything else is the transport's own
        return getattr(self._transport, name)


class HeldHeadHttpTools(HttpToolsProtocol):
    """``uvicorn.Config(http=...)``: httptools, writing through ``_HeldHead``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeldHead(transport, self.loop))  # type: ignore[arg-type]
