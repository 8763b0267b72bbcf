"""A lean blocking HTTP/1.1 keep-alive client for plain ``http://``, for the sync SDK paths.

Why: ``http.client`` parses every response's headers with the email package; measured here that
costs 0.15-0.25 ms per request on loopback, a third of an env step's whole round trip. This
client writes one request per ``sendall`` (TCP_NODELAY), reads the head with one ``find``, and
takes the body by Content-Length (or chunked). Anything unusual raises; callers that need
more (TLS, redirects, streaming) use httpx.

``SyncTransport`` is the blocking side's ``httpx.BaseTransport`` over these connections (the async
side's is ``rock.client.transport.LeanTransport``): an ``httpx.Client`` runs over it, and a caller
may hand ``rock.client.pools.SyncPool`` any other transport (``httpx.MockTransport`` in a test).
"""

from __future__ import annotations

import socket
import threading

import httpx


class ConnectionDropped(Exception):
    """The server closed the connection before answering: nothing ran, sending again is safe."""


class Response:
    """A whole response: status, body and header fields (raw, in order)."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []


class Connection:
    """One kept-alive connection; not thread-safe (use one per thread)."""

    def __init__(self, host: str, port: int, timeout: float | None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host_header = f"{host}:{port}".encode()
        self.buf = b""
        self.open = True

    def close(self) -> None:
        """Close the socket (a later request opens a new one)."""
        self.open = False
        self.sock.close()

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """One request on the kept-alive socket; the whole response (the socket is closed on any error)."""
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host_header,
                b"Content-Length: " + str(len(body)).encode()]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        try:
            self.sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
            return self._response()
        except BaseException:
            self.close()
            raise

    def _fill(self, first: bool) -> None:
        data = self.sock.recv(262144)
        if not data:
            if first and not self.buf:
                raise ConnectionDropped("the server closed the connection")
            raise ConnectionError("the server closed the connection mid-response")
        self.buf += data

    def _response(self) -> Response:
        first = True
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill(first)
            first = False
        lines = self.buf[:end].split(b"\r\n")
        self.buf = self.buf[end + 4:]
        status = int(lines[0].split(b" ", 2)[1])
        fields = {}
        raw = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            fields[name.lower()] = value
            raw.append((name, value))
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = self._chunked()
        else:
            length = int(fields.get(b"content-length", b"0"))
            while len(self.buf) < length:
                self._fill(False)
            body, self.buf = self.buf[:length], self.buf[length:]
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return Response(status, body, raw)

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill(False)
            size = int(self.buf[:eol].split(b";")[0], 16)
            while len(self.buf) < eol + 2 + size + 2:
                self._fill(False)
            parts.append(self.buf[eol + 2: eol + 2 + size])
            self.buf = self.buf[eol + 2 + size + 2:]
            if size == 0:
                return b"".join(parts)


# The server closed a kept-alive idle connection before reading the request: nothing ran, so
# sending again on a new connection is safe.
DROPPED = (ConnectionDropped, BrokenPipeError, ConnectionResetError)
_OWN_FIELDS = {"host", "content-length", "transfer-encoding"}  # ``Connection.request`` writes these itself
_SHARED = threading.local()  # one connection per thread and (host, port), for every shared transport


class SyncTransport(httpx.BaseTransport):
    """httpx's blocking transport for ``http://`` over kept-alive ``Connection`` s (``https://``
    goes to httpx's own transport).

    ``shared``: one connection per thread and server, shared by every shared transport of that
    thread (the env clients); else one connection of its own, one call at a time (a gym session).
    ``request_bytes`` is the byte-level hot path the pools use; ``handle_request`` is the same
    exchange for an ``httpx.Client``. Responses are read whole (no streaming).
    """

    def __init__(self, timeout: float | None = None, shared: bool = True):
        self.timeout, self.shared = timeout, shared
        self._conn: Connection | None = None
        self._key: tuple[str, int] | None = None
        self._lock = threading.Lock()  # one call at a time on a connection of its own
        self._fallback: httpx.HTTPTransport | None = None
        self._used: set[tuple[str, int]] = set()  # the servers this transport spoke to (shared: this thread's)

    def _connection(self, key: tuple[str, int], fresh: bool) -> Connection:
        if self.shared:
            conns: dict[tuple[str, int], Connection] = _SHARED.__dict__.setdefault("conns", {})
            conn: Connection | None = conns.get(key)
        else:
            conn = self._conn if self._key == key else None
        if fresh or conn is None or not conn.open:
            if conn is not None:
                conn.close()
            elif not self.shared and self._conn is not None:
                self._conn.close()
            conn = Connection(key[0], key[1], self.timeout)
            if self.shared:
                conns[key] = conn
            else:
                self._conn, self._key = conn, key
        self._used.add(key)
        return conn

    def request_bytes(self, host: str, port: int, method: str, path: str, data: bytes,
                      headers: dict[str, str]) -> Response:
        """One request on the kept-alive connection to ``host:port``; a connection the server
        dropped while idle is replaced once."""
        if self.shared:  # this thread's own connection: nothing to wait for
            return self._send((host, port), method, path, data, headers)
        with self._lock:
            return self._send((host, port), method, path, data, headers)

    def _send(self, key: tuple[str, int], method: str, path: str, data: bytes, headers: dict[str, str]) -> Response:
        for attempt in (0, 1):
            try:
                return self._connection(key, fresh=attempt == 1).request(method, path, data, headers)
            except DROPPED:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request (its body read whole) and read the whole response."""
        url = request.url
        if url.scheme != "http":
            if self._fallback is None:
                self._fallback = httpx.HTTPTransport()
            return self._fallback.handle_request(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _OWN_FIELDS}
        target = url.raw_path.decode("ascii")
        try:
            reply = self.request_bytes(url.host, url.port or 80, request.method, target, request.read(), headers)
        except socket.timeout as exc:
            raise httpx.ReadTimeout(f"timed out waiting for {url.host}:{url.port}") from exc
        except ConnectionRefusedError as exc:
            raise httpx.ConnectError(f"cannot connect to {url.host}:{url.port}: {exc.strerror or exc}") from exc
        except (ConnectionDropped, OSError, ValueError, IndexError) as exc:
            raise httpx.RemoteProtocolError(f"the exchange with {url.host}:{url.port} failed: {exc}") from exc
        fields = [(k, v) for k, v in reply.headers if k.lower() != b"transfer-encoding"]
        return httpx.Response(reply.status, headers=fields, content=reply.body, extensions={"http_version": b"HTTP/1.1"})

    def close(self) -> None:
        """Close this transport's connections (a shared one's: this thread's)."""
        owned: list[Connection | httpx.HTTPTransport | None]
        if self.shared:
            conns = _SHARED.__dict__.get("conns", {})
            owned = [conns.pop(key, None) for key in self._used]
            self._used.clear()
        else:
            owned, self._conn = [self._conn], None
        owned.append(self._fallback)
        self._fallback = None
        for each in owned:
            if each is not None:
                each.close()
