"""One TCP connection to a port inside a sandbox, through its agent (the ``tcp.connect`` op).

Reads and writes like a socket: ``read()`` returns b"" once the server has finished sending,
``write()`` waits while the agent connection's buffer is full, ``close_write()`` half-closes.
"""

from __future__ import annotations

import asyncio

from rock.agent import protocol
from rock.errors import AgentGone


class TcpStream:
    """A TCP connection to a port inside a sandbox, relayed by its agent over the existing socket (the
    sandbox needs no network)."""

    def __init__(self, client, rid: int, future: asyncio.Future, queue: asyncio.Queue, connected: asyncio.Future):
        self._client = client
        self._rid = rid
        self._future = future
        self._queue = queue
        self._connected = connected
        self._eof_sent = False
        self._read_eof = False
        self.expired = False  # set by expire(): a read gave up waiting

    @classmethod
    async def open(cls, client, port: int, host: str | None = None) -> "TcpStream":
        """Connect to ``port`` (on ``host``, loopback by default) inside the sandbox of ``client``; raises
        when the agent cannot connect."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        connected = loop.create_future()

        def on_event(meta: dict, body: bytes) -> None:
            kind = meta.get("event")
            if kind == "data":
                queue.put_nowait(body)
            elif kind == "closed":
                queue.put_nowait(None)
            elif kind == "connected" and not connected.done():
                connected.set_result(None)

        rid, future = client._start("tcp.connect", {"port": port, "host": host}, b"", on_event)

        def finished(f: asyncio.Future) -> None:
            queue.put_nowait(None)
            if not f.cancelled():
                f.exception()  # seen: an idle kept-alive relay may end with its sandbox, awaited by nobody
            if not connected.done():
                if f.cancelled():
                    connected.cancel()
                elif f.exception() is not None:
                    connected.set_exception(f.exception())
                else:
                    connected.set_result(None)

        future.add_done_callback(finished)
        stream = cls(client, rid, future, queue, connected)
        try:
            await connected
        except BaseException:
            stream.close()
            raise
        return stream

    async def read(self) -> bytes:
        """The next bytes from the server; b"" once it has finished sending."""
        if self._read_eof:
            return b""
        chunk = await self._queue.get()
        if chunk is None:
            self._read_eof = True
            return b""
        return chunk

    def expire(self) -> None:
        """End a read that waits (it returns b""), for a caller's read timeout: ``expired`` says
        so. The stream is not to be read from again."""
        self.expired = True
        self._queue.put_nowait(None)

    def readable(self) -> bool:
        """True when a read would not wait: bytes or the end are queued, or the relay is gone."""
        return self._read_eof or not self._queue.empty() or self._future.done()

    async def write(self, data: bytes) -> None:
        """Send ``data`` into the connection, in the protocol's chunks; ``AgentGone`` once it is closed."""
        if self._future.done() or self._eof_sent:
            raise AgentGone("the connection into the sandbox is closed")
        for i in range(0, len(data), protocol.CHUNK):
            self._client._send({"id": self._rid, "chunk": True}, data[i:i + protocol.CHUNK])
        await self._client._drain()

    def close_write(self) -> None:
        """Half-close: tell the far end nothing more will be sent."""
        if not self._eof_sent and not self._future.done() and not self._client.closed:
            self._eof_sent = True
            self._client._send({"id": self._rid, "eof": True})

    def close(self) -> None:
        """Drop the connection both ways (the agent closes its socket)."""
        if not self._future.done() and self._client._pending.pop(self._rid, None) is not None and not self._client.closed:
            self._client._send({"id": self._rid, "cancel": True})
        if not self._future.done():
            self._future.cancel()
