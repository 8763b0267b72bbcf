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
from collections.abc import AsyncIterator

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


def stream_response(events: AsyncIterator[dict], keepalive: dict, interval: float,
                    on_close=None) -> "ConnectStream":
    """Envelopes from ``events`` (dicts; a ConnectError raised ends the stream with it), a
    ``keepalive`` message after ``interval`` seconds of silence, and the end-of-stream. The
    messages ready together (a short command's start, output and end) go out as one write; the
    chunks go as (bytes, whether it is the last)."""

    async def chunks(left: asyncio.Future):
        it = events.__aiter__()
        pending: asyncio.Task | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(it.__anext__())
                await asyncio.wait({pending, left}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                if left.done():
                    return  # the client went away
                if not pending.done():
                    yield envelope(keepalive), False
                    continue
                out = []
                while pending is not None and pending.done():
                    task, pending = pending, None
                    try:
                        out.append(envelope(task.result()))
                    except StopAsyncIteration:
                        out.append(end_of_stream())
                    except (ConnectError, SandboxGone) as exc:
                        out.append(end_of_stream(exc))
                    else:
                        pending = asyncio.ensure_future(it.__anext__())
                        await asyncio.sleep(0)  # one turn of the loop: the next message, if it is there
                yield b"".join(out), pending is None
                if pending is None:
                    return
        finally:
            if pending is not None:
                pending.cancel()
            if on_close is not None:
                await on_close()

    return ConnectStream(chunks)


class ConnectStream(Response):
    """A Connect server stream's 200: the chunks ``produce(left)`` yields, written as they come.
    Lighter than Starlette's StreamingResponse (no task group per response): one task waits for
    the client to leave (``left``), and the producer ends when it does. The head goes out with
    the first chunk and the end of the body with the last (one write each instead of two: a
    short command's whole answer is then one or two writes, not four)."""

    media_type = "application/connect+json"

    def __init__(self, produce):
        self.status_code = 200
        self.background = None
        self.produce = produce
        self.init_headers()

    async def __call__(self, scope, receive, send) -> None:
        left = asyncio.ensure_future(_client_left(receive))
        chunks = self.produce(left)
        started = ended = False
        try:
            async for chunk, last in chunks:
                if not started:  # in the same turn as the chunk: the protocol sends them together
                    started = True
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                ended = last
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if not started:
                started = True
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not left.done() and not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            left.cancel()
            try:
                if not started:  # the producer failed first: the head still goes, as it always did
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            finally:
                await chunks.aclose()


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
