"""A lean blocking HTTP/1.1 keep-alive client for plain ``http://``, for the sync SDK paths.

Why: ``http.client`` parses every response's headers with the email package; measured here that
costs 0.15-0.25 ms per request on loopback, a third of an env step's whole round trip. This
client writes one request per ``sendall`` (TCP_NODELAY), reads the head with one ``find``, and
takes the body by Content-Length (or chunked). Anything unusual raises; callers that need
more (TLS, redirects, streaming) use httpx or http.client.
"""

from __future__ import annotations

import socket


class ConnectionDropped(Exception):
    """The server closed the connection before answering: nothing ran, sending again is safe."""


class Response:
    """A whole response: status and body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body


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
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = self._chunked()
        else:
            length = int(fields.get(b"content-length", b"0"))
            while len(self.buf) < length:
                self._fill(False)
            body, self.buf = self.buf[:length], self.buf[length:]
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return Response(status, body)

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
