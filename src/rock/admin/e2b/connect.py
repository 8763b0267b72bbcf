"""The Connect protocol (v1, JSON codec) as the e2b SDK speaks it to envd (its errors: ``errors.py``).

Unary: ``POST /<pkg>.<Service>/<Method>``, JSON body, 200 JSON reply; an error is a non-2xx
with ``{"code": "<connect code>", "message"}``. Server stream: the request is one envelope
``[flags u8][len u32 BE][json]``; the reply is 200 ``application/connect+json``, envelopes, then
an end-of-stream envelope (flags 2) carrying ``{}`` or ``{"error": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import struct

from starlette.requests import Request
from starlette.responses import Response

from rock.admin.e2b.errors import end_of_stream
from rock.admin.e2b.framing import END_STREAM, envelope
from rock.errors import ConnectError, SandboxGone

MAX_MESSAGE = 16 << 20


def _check_codec(request: Request, streaming: bool) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    want = "application/connect+json" if streaming else "application/json"
    if kind and kind != want:
        raise ConnectError("unimplemented", f"content type {kind!r} is not served: ROCK's envd speaks Connect with "
                                            f"the JSON codec ({want})")


def _object(raw: bytes) -> dict:
    try:
        msg = json.loads(raw or b"{}")
    except ValueError:
        raise ConnectError("invalid_argument", "the request message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ConnectError("invalid_argument", "the request message must be a JSON object")
    return msg


async def unary_message(request: Request) -> dict:
    _check_codec(request, False)
    return _object(await request.body())


async def stream_messages(request: Request) -> list[dict]:
    """Every envelope of a streamed request (a server stream sends one; StreamInput several)."""
    _check_codec(request, True)
    raw, out, pos = await request.body(), [], 0
    while pos < len(raw):
        if len(raw) - pos < 5:
            raise ConnectError("invalid_argument", "truncated Connect envelope")
        flags, size = struct.unpack_from(">BI", raw, pos)
        if size > MAX_MESSAGE or pos + 5 + size > len(raw):
            raise ConnectError("invalid_argument", "Connect envelope larger than its body")
        if flags & 0x01:
            raise ConnectError("unimplemented", "compressed envelopes are not served")
        if not flags & END_STREAM:
            out.append(_object(raw[pos + 5:pos + 5 + size]))
        pos += 5 + size
    if not out:
        raise ConnectError("invalid_argument", "the stream carried no request message")
    return out


class Feed:
    """A server stream's messages, pushed as they come (from callbacks on the event loop's thread:
    an agent's events), for ``ConnectStream`` to write. Each is an envelope at once; the end (or
    the error it ends with) once. The messages pushed before the writer wakes go out as one write
    (a short command's start, output and end), with no task or queue per message."""

    __slots__ = ("ready", "size", "last", "_wake")

    def __init__(self):
        self.ready: list[bytes] = []
        self.size = 0  # bytes pushed and not yet written
        self.last = False
        self._wake: asyncio.Future | None = None

    def push(self, msg: dict) -> None:
        if not self.last:
            data = envelope(msg)
            self.ready.append(data)
            self.size += len(data)
            self.poke()

    def end(self, exc: ConnectError | SandboxGone | None = None) -> None:
        """The end-of-stream envelope (``{}``, or the error); what is pushed after it is dropped."""
        if not self.last:
            self.ready.append(end_of_stream(exc))
            self.last = True
            self.poke()

    def poke(self, *_) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def take(self) -> bytes:
        out = b"".join(self.ready) if len(self.ready) > 1 else self.ready[0]
        self.ready.clear()
        self.size = 0
        return out


def stream_response(feed: Feed, keepalive: dict, interval: float, on_close=None) -> "ConnectStream":
    """The 200 of a server stream: ``feed``'s messages as they come, a ``keepalive`` message after
    ``interval`` seconds of silence, until its end; ``on_close()`` when it is over (the end written,
    or the client gone first)."""
    return ConnectStream(feed, envelope(keepalive), interval, on_close)


class ConnectStream(Response):
    """A Connect server stream's 200, written from a ``Feed``. Lighter than Starlette's
    StreamingResponse (no task group per response): one task waits for the client to leave, and
    the writer ends when it does. The head goes out with the first chunk and the end of the body
    with the last (one write each instead of two: a short command's whole answer is then one or
    two writes, not four)."""

    media_type = "application/connect+json"

    def __init__(self, feed: Feed, keepalive: bytes, interval: float, on_close=None):
        self.status_code = 200
        self.background = None
        self.feed, self.keepalive, self.interval, self.on_close = feed, keepalive, interval, on_close
        self.init_headers()

    async def __call__(self, scope, receive, send) -> None:
        feed, loop = self.feed, asyncio.get_running_loop()
        left = asyncio.ensure_future(_client_left(receive))
        left.add_done_callback(feed.poke)
        started = False
        try:
            while not left.done():
                if feed.ready:
                    last = feed.last
                    chunk = feed.take()
                else:
                    wake = feed._wake = loop.create_future()
                    timer = loop.call_later(self.interval, feed.poke)
                    try:
                        await wake
                    finally:
                        timer.cancel()
                        feed._wake = None
                    if feed.ready or left.done():
                        continue
                    chunk, last = self.keepalive, False
                if not started:  # in the same turn as the chunk: the protocol sends them together
                    started = True
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                if last:
                    return
        finally:
            left.cancel()
            try:
                if not started:  # the client left before the first chunk: the head still goes, as it always did
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            finally:
                if self.on_close is not None:
                    await self.on_close()


async def _client_left(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def deadline_of(request: Request) -> float | None:
    """Connect-Timeout-Ms as seconds (None: no deadline)."""
    raw = request.headers.get("connect-timeout-ms")
    try:
        ms = int(raw) if raw else 0
    except ValueError:
        raise ConnectError("invalid_argument", "Connect-Timeout-Ms must be an integer") from None
    return ms / 1000 if ms > 0 else None


def keepalive_of(request: Request) -> float:
    raw = request.headers.get("keepalive-ping-interval")
    try:
        return min(max(float(raw), 1.0), 300.0) if raw else 30.0
    except ValueError:
        return 30.0
