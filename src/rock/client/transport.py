"""A lean HTTP/1.1 keep-alive transport for httpx on plain ``http://``.

Why: measured here, httpx's default transport (httpcore on anyio) costs ~1 ms per request on
loopback, four times the server's whole round trip, which alone would miss the 1 ms target for
``arun("echo hi")``. This transport speaks HTTP/1.1 over asyncio streams with a small pool of
kept-alive connections; httpx stays the client API (auth, headers, timeouts, streaming).
``https://`` and anything else goes to httpx's own transport.

A connection belongs to the event loop that opened it, and the pool is keyed by loop as well as
by host and port: a transport may outlive a loop (``asyncio.run`` twice, an admin stopped and
another started in one process) or be shared by loops in several threads, and a connection of
another loop is either dead (uvloop closes a loop's handles when the loop closes, without marking
its transports as closing, so it looks usable and refuses the next write) or not ours to touch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx

_HEAD_LIMIT = 1 << 20
_SMALL_BODY = 1 << 20  # read at once (and free the connection) when the body is at most this big
_READ_CHUNK = 256 << 10

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    @contextlib.asynccontextmanager
    async def _timeout(delay: float | None) -> AsyncIterator[None]:
        task = asyncio.current_task()
        handle = asyncio.get_running_loop().call_later(delay, task.cancel) if delay is not None else None
        try:
            yield
        except asyncio.CancelledError:
            raise TimeoutError from None
        finally:
            if handle is not None:
                handle.cancel()


_Key = tuple[str, int, asyncio.AbstractEventLoop]  # host, port, and the loop the connection belongs to


class _Conn:
    __slots__ = ("reader", "writer", "key")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: _Key):
        self.reader, self.writer, self.key = reader, writer, key

    def usable(self) -> bool:
        # The server may have closed an idle connection: that shows as EOF or a closing transport.
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()


class _Body(httpx.AsyncByteStream):
    """A response body read on demand; the connection goes back to the pool when it is done."""

    def __init__(self, transport: "LeanTransport", conn: _Conn, length: int | None, chunked: bool, keep: bool):
        self.t, self.length, self.chunked, self.keep = transport, length, chunked, keep
        self.conn: _Conn | None = conn
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert self.conn is not None
        reader = self.conn.reader
        try:
            if self.chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                            pass
                        break
                    yield await reader.readexactly(size)
                    await reader.readexactly(2)
            elif self.length is not None:
                left = self.length
                while left:
                    chunk = await reader.read(min(left, _READ_CHUNK))
                    if not chunk:
                        raise httpx.RemoteProtocolError("connection closed before the response body was complete")
                    left -= len(chunk)
                    yield chunk
            else:
                self.keep = False
                while chunk := await reader.read(_READ_CHUNK):
                    yield chunk
            self.done = True
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            raise httpx.ReadError(f"reading the response body failed: {exc}") from exc

    async def aclose(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        if self.done and self.keep:
            self.t._release(conn)
        else:
            conn.close()


class LeanTransport(httpx.AsyncBaseTransport):
    """httpx's transport for ``http://``: kept-alive HTTP/1.1 connections over asyncio streams."""

    def __init__(self, max_idle_per_host: int = 64):
        self.max_idle = max_idle_per_host
        self._idle: dict[_Key, list[_Conn]] = {}
        self._fallback: httpx.AsyncHTTPTransport | None = None

    # -- pool ------------------------------------------------------------------------------

    def _release(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < self.max_idle and conn.usable():
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, key: _Key, timeout: float | None) -> _Conn:
        self._forget_closed_loops()
        try:
            async with _timeout(timeout):
                reader, writer = await asyncio.open_connection(key[0], key[1], limit=_HEAD_LIMIT)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}") from exc
        return _Conn(reader, writer, key)

    def _forget_closed_loops(self) -> None:
        """Drop the idle lists of loops that have closed (their connections closed with them)."""
        for key in list(self._idle):  # a copy: loops in other threads may add to the pool meanwhile
            if key[2].is_closed():
                self._idle.pop(key, None)

    def _take(self, key: _Key) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    # -- requests --------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request on a pooled connection; the response (its body streamed)."""
        url = request.url
        if url.scheme != "http":
            if self._fallback is None:
                self._fallback = httpx.AsyncHTTPTransport()
            return await self._fallback.handle_async_request(request)
        timeouts = request.extensions.get("timeout", {})
        key = (url.host, url.port or 80, asyncio.get_running_loop())
        head = self._head(request)
        body = request.stream if not isinstance(request.stream, httpx.ByteStream) else None
        payload = head + (request.content if body is None else b"")
        conn = self._take(key)
        retry = conn is not None
        if conn is not None:
            try:
                return await self._exchange(conn, payload, body, request, timeouts)
            except _Stale:
                pass  # the server dropped the idle connection before answering: retry on a new one
        conn = await self._connect(key, timeouts.get("connect"))
        try:
            return await self._exchange(conn, payload, body, request, timeouts)
        except _Stale as exc:
            raise httpx.RemoteProtocolError("server closed the connection without a response") from exc
        except httpx.StreamConsumed as exc:
            if not retry:
                raise
            raise httpx.RemoteProtocolError("server closed the kept-alive connection without a response after the "
                                            "request's streamed body went out on it; a streamed body cannot be sent "
                                            "again") from exc

    @staticmethod
    def _head(request: httpx.Request) -> bytes:
        target = request.url.raw_path
        lines = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _exchange(self, conn: _Conn, payload: bytes, body: Any, request: httpx.Request,
                        timeouts: dict[str, Any]) -> httpx.Response:
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        first, rest = await self._send_head(conn, payload, body, chunked, timeouts.get("read"))
        return await self._response(conn, first, rest, request)

    async def _send_head(self, conn: _Conn, payload: bytes, body: Any, chunked: bool,
                         read_timeout: float | None) -> tuple[bytes, bytes]:
        """Write the request, read the response head. _Stale if nothing at all came back."""
        started = False
        try:
            conn.writer.write(payload)
        except RuntimeError as exc:
            # uvloop refuses a write on a handle already closed (not just closing): nothing of the
            # request went out. The pool's keys keep such connections out; this is the backstop.
            conn.close()
            raise _Stale() from exc
        try:
            if body is not None:
                async for chunk in body:
                    _write(conn.writer, b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    await conn.writer.drain()
                if chunked:
                    _write(conn.writer, b"0\r\n\r\n")
                await conn.writer.drain()
            async with _timeout(read_timeout):
                first = await conn.reader.readuntil(b"\r\n")
                started = True
                rest = await conn.reader.readuntil(b"\r\n\r\n")
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout("timed out waiting for the response") from exc
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            conn.close()
            if not started:
                raise _Stale() from exc
            raise httpx.ReadError(f"reading the response failed: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return first, rest

    async def request_bytes(self, host: str, port: int, payload: bytes, read_timeout: float | None,
                            connect_timeout: float | None = 30.0) -> tuple[int, bytes]:
        """The hot path: a complete request already encoded -> (status, body), on the same pool.

        Skips building httpx Request/Response objects (~0.2 ms a call here); only for small
        requests and responses with Content-Length, which is what the JSON routes send.
        """
        key = (host, port, asyncio.get_running_loop())
        conn = self._take(key)
        if conn is not None:
            try:
                first, rest = await self._send_head(conn, payload, None, False, read_timeout)
            except _Stale:
                conn = None
        if conn is None:
            conn = await self._connect(key, connect_timeout)
            try:
                first, rest = await self._send_head(conn, payload, None, False, read_timeout)
            except _Stale as exc:
                raise httpx.RemoteProtocolError("server closed the connection without a response") from exc
        try:
            status = int(first[9:12])
            length, keep = None, first.startswith(b"HTTP/1.1")
            for line in rest.split(b"\r\n"):
                name, _, value = line.partition(b":")
                lower = name.strip().lower()
                if lower == b"content-length":
                    length = int(value)
                elif lower == b"connection" and value.strip().lower() == b"close":
                    keep = False
                elif lower == b"transfer-encoding":
                    length = None
                    break
            if length is None:  # not what our routes send; read it the general way
                stream = _Body(self, conn, None, b"chunked" in rest.lower(), keep)
                data = b"".join([chunk async for chunk in stream])
                await stream.aclose()
                return status, data
            data = await conn.reader.readexactly(length) if length else b""
        except (ValueError, asyncio.IncompleteReadError, ConnectionError) as exc:
            conn.close()
            raise httpx.ReadError(f"reading the response failed: {exc}") from exc
        except BaseException:  # cancelled, or the body's own error: the rest of the answer is unread
            conn.close()
            raise
        self._release(conn) if keep else conn.close()
        return status, data

    async def _response(self, conn: _Conn, first: bytes, rest: bytes, request: httpx.Request) -> httpx.Response:
        try:
            version, status, *reason = first.rstrip(b"\r\n").split(b" ", 2)
            status_code = int(status)
        except ValueError as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"bad status line {first[:80]!r}") from exc
        headers, length, chunked, keep = [], None, False, version == b"HTTP/1.1"
        for line in rest.split(b"\r\n"):
            if not line:
                continue
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lower == b"connection":
                keep = value.lower() != b"close"
        if request.method == "HEAD" or status_code in (204, 304) or 100 <= status_code < 200:
            length, chunked = 0, False
        ext = {"http_version": version, "reason_phrase": reason[0] if reason else b""}
        if length is not None and length <= _SMALL_BODY and not chunked:
            try:
                content = await conn.reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                conn.close()
                raise httpx.ReadError(f"reading the response body failed: {exc}") from exc
            except BaseException:  # cancelled: the rest of the body is unread
                conn.close()
                raise
            self._release(conn) if keep else conn.close()
            return httpx.Response(status_code, headers=headers, content=content, extensions=ext)
        stream = _Body(self, conn, length, chunked, keep)
        return httpx.Response(status_code, headers=headers, stream=stream, extensions=ext)

    async def aclose(self) -> None:
        """Close every pooled connection, each on its own loop."""
        here = asyncio.get_running_loop()
        for (_, _, loop), idle in list(self._idle.items()):
            for conn in idle:
                if loop is here:
                    conn.close()
                elif not loop.is_closed():
                    with contextlib.suppress(RuntimeError):  # it closed since: so did its connections
                        loop.call_soon_threadsafe(conn.close)
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write more of a streamed request body. The body's source is awaited between writes, and the
    connection may close meanwhile: uvloop then refuses the write (a RuntimeError, where asyncio's
    own loop drops the bytes); either way the connection is gone."""
    try:
        writer.write(data)
    except RuntimeError as exc:
        raise ConnectionResetError(f"the connection closed while the request body was being sent ({exc})") from exc


class _Stale(Exception):
    """The connection failed before any byte of the response arrived."""
