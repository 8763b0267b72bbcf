"""uvicorn's httptools protocol, sending a response's head and body in one write.

uvicorn writes a response's head (``http.response.start``) and its body as two
``transport.write`` calls; on a TCP socket that is two sends and two segments, and a client
that reads between them wakes twice for one answer. Nearly every answer here is one small JSON
body sent right after its head (commands, starts, env steps), so the head is held until the
next write of the same connection and goes out with it; a head with nothing after it in the
same turn of the event loop (an empty or streamed body) goes out on its own at the end of that
turn. Nothing else changes: bodies, streams, WebSocket upgrades and closes pass straight through.

Its WebSockets (``ReadingWebSockets``) keep reading while the route keeps up with them: uvicorn
pauses the socket after every message and resumes it once the route has taken it, two changes
of the event loop's interest list per message (two ``io_uring_enter`` under uvloop), which a
trainer's answer pays on every model call. The socket is paused only once a message arrives
before the route took the one before.

It also times out half-sent requests, which uvicorn does not (its keep-alive timer stops at a
request's first byte): a request's head must arrive whole within ``HEAD_TIMEOUT`` seconds of its
first byte (else a 408 and the connection closes), and its body may go ``BODY_IDLE_TIMEOUT``
seconds without a byte while the server is reading it (else the connection closes: the route
sees the client gone). A slow client holds a connection, never the admin.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

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
            # Lost meanwhile (uvicorn's route wrote the head before hearing of it): nothing to send
            # it to, and uvloop refuses a write once the loss has closed the handle.
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def is_closing(self) -> bool:  # asked after every response: not through __getattr__'s failed lookup
        return self._transport.is_closing()

    def __getattr__(self, name: str):  # everything else is the transport's own
        return getattr(self._transport, name)


HEAD_TIMEOUT = 30.0
BODY_IDLE_TIMEOUT = 60.0


class HeldHeadHttpTools(HttpToolsProtocol):
    """``uvicorn.Config(http=...)``: httptools, writing through ``_HeldHead``, with read timeouts.

    A request that arrives whole in one read (nearly all) arms no timer: one is armed only when
    a read leaves a request unfinished, and it checks the time of the last read when it fires."""

    head_timeout = HEAD_TIMEOUT
    body_idle_timeout = BODY_IDLE_TIMEOUT
    _phase: str | None = None  # "head" or "body" while a request is being read
    _began = _last_read = 0.0
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeldHead(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        super().data_received(data)
        if self._phase is not None and self._read_timer is None and not self.transport.is_closing():
            self._read_timer = self.loop.call_later(self._wait_left(), self._late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._began = "head", self._last_read

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = "body"

    def on_message_complete(self) -> None:
        self._stop_timer()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._stop_timer()  # the connection is the WebSocket protocol's from here on
        super().handle_websocket_upgrade()

    def _stop_timer(self) -> None:
        self._phase = None
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _wait_left(self) -> float:
        if self._phase == "head":
            return self._began + self.head_timeout - self.loop.time()
        return self._last_read + self.body_idle_timeout - self.loop.time()

    def _late(self) -> None:
        self._read_timer = None
        if self._phase is None or self.transport.is_closing():
            return
        left = self._wait_left()
        if left > 0 or (self._phase == "body" and self.flow.read_paused):
            # not late yet, or the route is not reading (busy with what came): not the client's delay
            if left <= 0:
                self._last_read = self.loop.time()
            self._read_timer = self.loop.call_later(max(left, 1.0), self._late)
            return
        if self._phase == "head":
            self._send_408(f"the request head did not arrive whole within {self.head_timeout:g} seconds")
        elif self.cycle is not None and not self.cycle.response_started:
            self._send_408(f"no byte of the request body arrived for {self.body_idle_timeout:g} seconds")
            self.cycle.response_started = self.cycle.response_complete = True  # the route's own answer goes nowhere
        self._phase = None
        self.transport.close()

    def _send_408(self, message: str) -> None:
        body = message.encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))


class ReadingWebSockets(WebSocketsSansIOProtocol):
    """``uvicorn.Config(ws=...)``: uvicorn's WebSocket protocol (websockets' sans-I/O), pausing the
    socket only when the route is behind: a message that finds the route's queue empty is queued
    and reading goes on; one that finds a message still waiting is queued and pauses reading, as
    uvicorn always does, until the route has taken both (uvicorn's ``receive``). At most the
    messages of one read plus one wait, as before (uvicorn queues every message of a read)."""

    def send_receive_event_to_app(self) -> None:
        if self.read_paused or not self.queue.empty():
            super().send_receive_event_to_app()  # behind: queued, and the socket paused
            return
        # The route takes this one next. uvicorn pauses unless read_paused is already set: set
        # for the call only, so the message is queued and the socket left reading.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False
