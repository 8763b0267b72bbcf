"""The lean sync HTTP client against a real socket server on loopback that answers in the
shapes HTTP/1.1 allows: Content-Length, chunked, Connection: close, and a dropped idle connection."""

from __future__ import annotations

import socket
import threading

import pytest

from rock.sdk.sync_transport import Connection, ConnectionDropped

RESPONSES = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
    b"/close": b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
}


@pytest.fixture
def server():
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    length = int(next((l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), b"0"))
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    body, buf = rest[:length], rest[length:]
                    path = head.split(b" ")[1]
                    seen.append(body)
                    if path == b"/drop":  # a server closing a kept-alive connection instead of answering
                        break
                    conn.sendall(RESPONSES[path])
                    if path == b"/close":
                        break

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], seen
    listener.close()


def test_content_length_chunked_and_keep_alive(server):
    port, seen = server
    conn = Connection("127.0.0.1", port, 10)
    first = conn.request("POST", "/length", b'{"a":1}', {"Content-Type": "application/json"})
    second = conn.request("POST", "/chunked", b"", {})
    assert (first.status, first.body, second.status, second.body) == (200, b"hello", 201, b"abcdefg")
    assert conn.open and seen == [b'{"a":1}', b""]
    conn.close()


def test_connection_close_is_honoured(server):
    port, _ = server
    conn = Connection("127.0.0.1", port, 10)
    response = conn.request("GET", "/close", b"", {})
    assert (response.status, response.body, conn.open) == (404, b"no", False)


def test_dropped_connection_says_nothing_ran(server):
    port, _ = server
    conn = Connection("127.0.0.1", port, 10)
    with pytest.raises(ConnectionDropped):
        conn.request("POST", "/drop", b"x", {})
    assert not conn.open
