"""The admin's HTTP protocol (rock.admin.http_protocol): a response's head goes out with its body,
and every kind of response still arrives whole and in order."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import uvicorn

from rock.admin.http_protocol import _HeldHead
from rock.cli.server import uvicorn_config
from tests.admin.harness import free_port


class _Recording(asyncio.Transport):
    """Records each write the socket would get (the unit under test is what reaches it)."""

    def __init__(self):
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


async def test_a_head_goes_out_with_the_body_that_follows_it():
    sent = _Recording()
    t = _HeldHead(sent, asyncio.get_running_loop())
    t.write(HEAD)
    assert sent.writes == []
    t.write(b"{}")
    assert sent.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the end of the turn finds nothing held
    assert sent.writes == [HEAD + b"{}"]


async def test_a_head_alone_goes_out_at_the_end_of_the_turn_and_upgrades_pass_at_once():
    sent = _Recording()
    t = _HeldHead(sent, asyncio.get_running_loop())
    empty = b"HTTP/1.1 204 No Content\r\n\r\n"
    t.write(empty)
    await asyncio.sleep(0)
    assert sent.writes == [empty]
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
    t.write(upgrade)
    assert sent.writes == [empty, upgrade]
    t.write(b"\x81\x02hi")  # anything that is not a head passes straight through
    assert sent.writes[-1] == b"\x81\x02hi"
    t.write(HEAD)
    t.close()  # a close never drops a held head
    assert sent.writes[-1] == HEAD and sent.closed
    assert t.is_closing()  # the rest is the transport's own


def test_a_head_held_when_the_connection_is_lost_is_dropped_not_written_to_the_closed_handle():
    """The peer resets the connection, and the app's head is written (held) in the same turn,
    before uvicorn hears of the loss: by the end of the turn uvloop has closed the handle, and
    the held head goes nowhere (a write there is refused with a RuntimeError, logged by the loop)."""
    import uvloop

    async def main() -> list:
        loop = asyncio.get_running_loop()
        errors: list = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        ours, theirs = socket.socketpair()
        lost = loop.create_future()

        class Noting(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        transport, _ = await loop.create_connection(Noting, sock=ours)
        held = _HeldHead(transport, loop)
        transport.abort()  # the loss is known to the transport; its protocol hears of it next turn
        held.write(HEAD)
        await lost
        await asyncio.sleep(0)  # one more turn: whatever the held head's flush does has happened
        theirs.close()
        return errors

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == []
    finally:
        loop.close()


async def _lifespan(receive, send):
    while True:
        kind = (await receive())["type"]
        await send({"type": kind + ".complete"})
        if kind == "lifespan.shutdown":
            return


async def _app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    path = scope["path"]
    if path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":  # no length: chunked, three body writes
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    else:
        body = b'{"path": "%s"}' % path.encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


def _read_response(f, head: bool = False) -> tuple[int, dict, bytes]:
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    if head:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, f.read(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while (size := int(f.readline().strip(), 16)):
            body += f.read(size)
            f.readline()
        f.readline()
        return status, headers, body
    return status, headers, b""


@contextlib.contextmanager
def _served(app, ws=None):
    """``app`` served as the admin is (uvicorn_config; ``ws``: another WebSocket protocol), on a
    thread; yields its port."""
    port = free_port()
    config = uvicorn_config(app, "127.0.0.1", port, "warning")
    if ws is not None:
        config.ws = ws
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


def test_every_kind_of_response_arrives_whole_and_in_order_over_one_connection():
    with _served(_app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # Pipelined: each answer must come after the one before it, none cut or merged wrongly.
        requests = [b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n", b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\n",
                    b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n", b"HEAD /b HTTP/1.1\r\nhost: x\r\n\r\n",
                    b"GET /c HTTP/1.1\r\nhost: x\r\n\r\n"]
        s.sendall(b"".join(requests))
        f = s.makefile("rb")
        assert _read_response(f)[::2] == (200, b'{"path": "/a"}')
        assert _read_response(f)[::2] == (204, b"")
        assert _read_response(f)[::2] == (200, b"one two three")
        status, headers, _ = _read_response(f, head=True)  # HEAD: the length is announced, no body follows
        assert status == 200 and headers["content-length"] == str(len(b'{"path": "/b"}'))
        assert _read_response(f)[::2] == (200, b'{"path": "/c"}')


HTTPX_KEEPALIVE_EXPIRY_S = 5.0  # httpx.Limits' default: how long httpx reuses an idle pooled connection


def test_an_idle_connection_outlives_the_clients_own_keepalive_expiry():
    """A pooled connection httpx may still reuse is still open at the admin: were both 5 s (uvicorn's
    default), a request sent as the admin closes it would be answered with a reset; a 1,000-start
    burst lost one start that way."""
    with _served(_app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        s.sendall(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_response(f)[::2] == (200, b'{"path": "/first"}')
        time.sleep(HTTPX_KEEPALIVE_EXPIRY_S + 0.5)
        s.sendall(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
        line = f.readline()
        assert line.startswith(b"HTTP/1.1 200"), f"the admin closed an idle connection httpx would still reuse: {line!r}"


class _Counted:
    """The real transport, counting the pauses and resumes of reading asked of it."""

    def __init__(self, transport, counts: dict):
        self._transport, self._counts = transport, counts

    def pause_reading(self):
        self._counts["pause"] += 1
        self._transport.pause_reading()

    def resume_reading(self):
        self._counts["resume"] += 1
        self._transport.resume_reading()

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _counting(base):
    counts = {"pause": 0, "resume": 0}

    class Counting(base):
        def connection_made(self, transport):
            super().connection_made(_Counted(transport, counts))

    return Counting, counts


async def _ws_echo(scope, receive, send):
    """Echoes each text message; after "stall" it takes nothing until ``_RELEASE`` is set."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "stall":
            while not _RELEASE.is_set():
                await asyncio.sleep(0.01)
        await send({"type": "websocket.send", "text": message["text"]})


_RELEASE = threading.Event()


def _ws_exchange(protocol, counts: dict) -> list[str]:
    """Serve ``_ws_echo`` with ``protocol``; 50 messages in lockstep, then a stall with 200 sent
    behind it, released once the socket was paused (within 10 s). Returns what came back, in order."""
    from websockets.sync.client import connect

    _RELEASE.clear()
    got: list[str] = []
    try:
        with _served(_ws_echo, ws=protocol) as port, connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
            for i in range(50):
                ws.send(f"m{i}")
                got.append(ws.recv(timeout=10))
            before = counts["pause"]
            ws.send("stall")
            for i in range(200):
                ws.send(f"s{i}")
            deadline = time.monotonic() + 10
            while counts["pause"] == before and time.monotonic() < deadline:
                time.sleep(0.01)
            _RELEASE.set()
            for _ in range(201):
                got.append(ws.recv(timeout=10))
    finally:
        _RELEASE.set()  # after a failure above, a route still stalled ends too
    return got


def test_a_websocket_reads_on_while_its_route_keeps_up_and_pauses_when_it_falls_behind():
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from rock.admin.http_protocol import ReadingWebSockets

    expected = [f"m{i}" for i in range(50)] + ["stall"] + [f"s{i}" for i in range(200)]
    # The control: uvicorn's own pauses the socket for every message, the lockstep ones too.
    plain, plain_counts = _counting(WebSocketsSansIOProtocol)
    assert _ws_exchange(plain, plain_counts) == expected
    assert plain_counts["pause"] >= 50
    reading, counts = _counting(ReadingWebSockets)
    assert _ws_exchange(reading, counts) == expected  # every message, in order
    # No pause in the lockstep part; the stall's backlog paused it, and every pause was resumed.
    assert 1 <= counts["pause"] < 50
    assert counts["resume"] >= counts["pause"]
