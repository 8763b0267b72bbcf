"""HTTP/1.1 to a server inside a sandbox, over the agent's TCP relay, on kept-alive connections.

A lean client of our own: the request head is written in one piece and the response is parsed by
httptools (uvicorn's parser, llhttp). Measured here, httpcore over the relay (h11's state machine,
anyio locks, a task per timed read) cost ~1 ms of the admin's CPU per proxied request, several
times the command round trip on the same sandbox; this costs a small fraction of that.

A new relay costs a ``tcp.connect`` round trip, a thread in the agent and the server's accept,
so connections are kept per (agent connection, port) and reused while the server keeps them
alive. Idle ones are closed after ``idle`` seconds without a request (each holds a thread in
the agent and a socket in the server), and the whole pool goes with them.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable

import httptools

CONNECT_TIMEOUT = 10.0
WRITE_TIMEOUT = 60.0
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
_NO_LENGTH = ("GET", "HEAD", "DELETE", "OPTIONS")  # requests that carry no content-length when empty
_SMALL = 64 << 10


class ProxyError(Exception):
    """The server in the sandbox closed, stalled or answered with something that is not HTTP."""


class _Stale(ProxyError):
    """A reused connection ended before any byte of the answer: the server had closed it."""


class _Parse:
    """httptools callbacks for the responses on one connection (1xx interim answers skipped)."""

    __slots__ = ("parser", "head_only", "status", "headers", "chunks", "head_done", "done", "interim", "framed", "connection",
                 "length")

    def __init__(self, head_only: bool):
        self.parser = httptools.HttpResponseParser(self)
        self.head_only = head_only  # HEAD: the answer ends with its head, whatever length it declares
        self.status, self.headers, self.chunks = 0, [], []
        self.head_done = self.done = self.interim = False
        self.framed = False  # a length or chunks say where the body ends; else the end of the connection
        self.connection = b""  # the answer's Connection header (close, keep-alive)
        self.length = -1  # the answer's Content-Length, when it has one

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"connection":
            self.connection = value.lower()
        elif lower == b"content-length":
            self.framed = True
            self.length = int(value) if value.strip().isdigit() else -1
        elif lower == b"transfer-encoding" and b"chunked" in value.lower():
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers, self.interim = [], True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self.status, self.head_done = status, True
        if self.head_only:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        else:
            self.done = True

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.done = True  # a protocol switch: nothing more of HTTP on this connection
        except httptools.HttpParserError as exc:
            raise ProxyError(f"the answer is not valid HTTP/1.1 ({exc})") from None

    def keep_alive(self) -> bool:
        """May the connection carry another request (llhttp forgets once the answer is complete)?"""
        if self.parser.get_http_version() == "1.1":
            return b"close" not in self.connection
        return b"keep-alive" in self.connection

    def feed_eof(self) -> None:
        if self.head_done and not self.done and not self.framed:
            self.done = True  # a body that runs to the end of the connection ends here
        if not self.done:
            raise ProxyError("the server closed the connection before the answer was complete")


class _PortPool:
    """Kept-alive connections to one port of one sandbox."""

    def __init__(self, agent, port: int, keep: int, idle: float, forget: Callable[[], None]):
        self.agent, self.port, self.keep, self.idle = agent, port, keep, idle
        self.conns: list = []  # idle relays (rock.worker.tcp_stream.TcpStream), most recent last
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._forget = forget
        self._timer: asyncio.TimerHandle | None = None

    def take(self):
        while self.conns:
            stream = self.conns.pop()
            # Bytes (or the end) waiting on an idle connection mean the server closed it.
            if not stream.readable():
                return stream
            stream.close()
        return None

    def give_back(self, stream) -> None:
        if len(self.conns) < self.keep and not stream.readable():
            self.conns.append(stream)
        else:
            stream.close()

    def begin(self) -> None:
        self.in_flight += 1
        self.last_used = time.monotonic()

    def end(self) -> None:
        self.in_flight -= 1
        self.last_used = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.idle, self._expire)

    def _expire(self) -> None:
        self._timer = None
        quiet = time.monotonic() - self.last_used
        if self.in_flight or quiet < self.idle:
            self._timer = asyncio.get_running_loop().call_later(self.idle - quiet if not self.in_flight else self.idle,
                                                                self._expire)
            return
        self._forget()
        self.close()

    def close(self) -> None:
        conns, self.conns = self.conns, []
        for stream in conns:
            stream.close()


class Pools:
    """The admin's kept-alive connections into sandboxes, per agent connection and port. Keyed
    weakly by the agent client: when a sandbox's agent connection goes, so do its pools."""

    def __init__(self, keep: int = 8, idle: float = 30.0):
        self.keep = keep
        self.idle = idle
        self._by_agent: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, agent, port: int) -> _PortPool:
        ports = self._by_agent.setdefault(agent, {})
        pool = ports.get(port)
        if pool is None or getattr(agent, "closed", False):
            ports[port] = pool = _PortPool(agent, port, self.keep, self.idle, lambda: self._drop(agent, port, pool))
        return pool

    def _drop(self, agent, port: int, pool: _PortPool) -> None:
        ports = self._by_agent.get(agent)
        if ports is not None and ports.get(port) is pool:
            del ports[port]

    def __len__(self) -> int:
        return sum(len(p) for p in self._by_agent.values())


class Answer:
    """A proxied response: ``status``, ``headers`` (bytes pairs as the server sent them), and the
    body: all of it in ``body`` when ``complete``, else read on with ``chunks()``. ``aclose()``
    hands the connection back to the pool (or closes it) and must be called once."""

    def __init__(self, pool: _PortPool, stream, parse: _Parse, timeout: float | None):
        self.pool, self.stream, self.parse, self.timeout = pool, stream, parse, timeout
        self.status, self.headers = parse.status, parse.headers
        self.complete = parse.done
        self.body = b"".join(parse.chunks) if parse.done else b""
        self.eof = False

    async def chunks(self) -> AsyncIterator[bytes]:
        parse = self.parse
        while True:
            if parse.chunks:
                ready, parse.chunks = parse.chunks, []
                for chunk in ready:
                    yield chunk
            if parse.done:
                return
            data = await _read(self.stream, self.timeout)
            if data:
                parse.feed(data)
            else:
                parse.feed_eof()
                self.eof = True

    async def aclose(self) -> None:
        stream, self.stream = self.stream, None
        if stream is None:
            return
        try:
            parse = self.parse
            if parse.done and not self.eof and not parse.head_only and parse.keep_alive():
                self.pool.give_back(stream)
            else:
                stream.close()
        finally:
            self.pool.end()


async def _read(stream, timeout: float | None) -> bytes:
    """The next bytes from the server; ProxyError when none come within ``timeout`` seconds."""
    if timeout is None:
        return await stream.read()
    timer = asyncio.get_running_loop().call_later(timeout, stream.expire)
    try:
        data = await stream.read()
    finally:
        timer.cancel()
    if stream.expired:
        raise ProxyError(f"no answer within {timeout:g}s")
    return data


def _target(target: str) -> bytes:
    # The path arrives percent-decoded: bytes that would end or split the request line (spaces,
    # CR, LF, controls) are encoded again, so nothing a caller sends can add a header or a request.
    raw = target.encode("utf-8", "surrogateescape")
    if any(b <= 0x20 or b == 0x7F for b in raw):
        raw = b"".join(b"%%%02X" % b if b <= 0x20 or b == 0x7F else bytes((b,)) for b in raw)
    return raw


async def _exchange(pool: _PortPool, stream, payload: bytes, head_only: bool, timeout: float | None,
                    reused: bool) -> Answer:
    try:
        if len(payload) > _SMALL:
            await asyncio.wait_for(stream.write(payload), WRITE_TIMEOUT)
        else:
            await stream.write(payload)
        parse = _Parse(head_only)
        got = False
        # Until the head, and then the rest of a small body of declared length: servers often
        # write the head and the body apart (Python's http.server does), and an answer that is
        # whole goes back in one piece instead of as a stream.
        while not parse.head_done or (not parse.done and 0 <= parse.length <= _SMALL):
            data = await _read(stream, timeout)
            if not data:
                if reused and not got:
                    raise _Stale("the kept-alive connection was closed by the server")
                raise ProxyError("the server closed the connection without a complete answer")
            got = True
            parse.feed(data)
    except BaseException:
        stream.close()
        raise
    return Answer(pool, stream, parse, timeout)


async def request(pools: Pools, agent, port: int, method: str, target: str, headers: list[tuple[bytes, bytes]],
                  body: bytes, timeout: float | None) -> Answer:
    """Send one request to the server on ``port``; returns its Answer once the head has come."""
    pool = pools.get(agent, port)
    lines = [b"%s %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % (method.encode("ascii"), _target(target), port)]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    if body or method not in _NO_LENGTH:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines += [b"\r\n", body]
    payload = b"".join(lines)
    head_only = method == "HEAD"
    pool.begin()
    try:
        stream = pool.take()
        if stream is not None:
            try:
                return await _exchange(pool, stream, payload, head_only, timeout, True)
            except _Stale:
                # A kept-alive connection the server closed just as we reused it fails before any
                # answer; a request that may be repeated (RFC 9110 §9.2.2) goes once more, on a new one.
                if method not in IDEMPOTENT:
                    raise
        stream = await asyncio.wait_for(agent.tcp_connect(port), CONNECT_TIMEOUT)
        return await _exchange(pool, stream, payload, head_only, timeout, False)
    except BaseException:
        pool.end()
        raise
