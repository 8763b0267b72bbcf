"""The lean transport's pool of kept-alive connections, on uvloop as the admin runs it.

A connection belongs to the event loop that opened it: uvloop closes every handle of a loop when
the loop closes, without marking the transport as closing, so a pooled connection that outlived
its loop looks usable and refuses the next write ("the handler is closed"); and a loop running in
another thread must never be handed a connection it does not own. The admin's chat proxy keeps one
pool for every model call, and a test process runs several admins, each on its own loop.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import warnings
from collections.abc import Iterator

import pytest

from rock.client.transport import LeanTransport
from tests.client.loopback import JsonHandler, serving

uvloop = pytest.importorskip("uvloop")


def request(tag: str = "") -> bytes:
    return b"GET / HTTP/1.1\r\nhost: x\r\nx-tag: %s\r\n\r\n" % tag.encode()


class Connections:
    """What the server saw: each connection (by the client's port) with the tags of its requests."""

    def __init__(self) -> None:
        self.seen: dict[int, list[str]] = {}
        self.lock = threading.Lock()

    def handler(self, after=None) -> type[JsonHandler]:
        """A handler noting each request; ``after(handler)`` runs once its answer is written."""
        seen = self

        class Noting(JsonHandler):
            def answer(self, body: bytes):
                with seen.lock:
                    seen.seen.setdefault(self.client_address[1], []).append(self.headers.get("x-tag", ""))
                return 200, {"n": sum(map(len, seen.seen.values()))}, {}

            def _reply(self) -> None:
                super()._reply()
                if after is not None:
                    self.wfile.flush()
                    after(self)

            do_GET = _reply

        return Noting


@pytest.fixture
def server() -> Iterator[tuple[int, Connections]]:
    conns = Connections()
    with serving(conns.handler()) as url:
        yield int(url.rsplit(":", 1)[1]), conns


def test_a_pool_that_outlives_its_event_loop_opens_fresh_connections(server):
    """The loop that filled the pool closes (as an admin's does when it stops); the next loop's
    requests go out on connections of their own, never on the dead loop's (RuntimeError before)."""
    port, conns = server
    transport = LeanTransport()
    for tag in ("first loop", "second loop"):
        loop = uvloop.new_event_loop()
        try:
            for _ in range(2):
                assert loop.run_until_complete(transport.request_bytes("127.0.0.1", port, request(tag), 10))[0] == 200
        finally:
            loop.close()
    assert sorted(conns.seen.values()) == [["first loop"] * 2, ["second loop"] * 2]


def test_a_pooled_connection_whose_handle_is_gone_is_not_written_to(server):
    """The backstop: a connection the pool still holds whose handle uvloop has already closed
    (put there by hand, as the pool's keys keep a dead loop's connections apart) refuses the
    write; nothing of the request went out, so it goes out again on a fresh connection."""
    port, conns = server
    transport = LeanTransport()
    dead = uvloop.new_event_loop()
    try:
        assert dead.run_until_complete(transport.request_bytes("127.0.0.1", port, request("dead"), 10))[0] == 200
    finally:
        dead.close()
    (stale,) = transport._idle.pop(("127.0.0.1", port, dead))
    loop = uvloop.new_event_loop()
    try:
        transport._idle[("127.0.0.1", port, loop)] = [stale]
        assert stale.usable()  # what the pool sees: neither closing nor at EOF
        assert loop.run_until_complete(transport.request_bytes("127.0.0.1", port, request("live"), 10))[0] == 200
        loop.run_until_complete(transport.aclose())
    finally:
        loop.close()
    assert sorted(conns.seen.values()) == [["dead"], ["live"]]


def test_loops_running_at_once_never_share_a_connection(server):
    """Two loops, each in its own thread, on one transport: each keeps to its own connection."""
    port, conns = server
    transport = LeanTransport()
    other = uvloop.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    here = uvloop.new_event_loop()
    try:
        for _ in range(2):
            there = asyncio.run_coroutine_threadsafe(transport.request_bytes("127.0.0.1", port, request("other"), 10),
                                                     other)
            assert there.result(30)[0] == 200  # its connection is idle in the pool now
            assert here.run_until_complete(transport.request_bytes("127.0.0.1", port, request("here"), 10))[0] == 200
        assert sorted(conns.seen.values()) == [["here"] * 2, ["other"] * 2]
        asyncio.run_coroutine_threadsafe(transport.aclose(), other).result(30)
        here.run_until_complete(transport.aclose())
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(30)
        other.close()
        here.close()


def _close(handler: JsonHandler) -> None:
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def _reset(handler: JsonHandler) -> None:
    handler.close_connection = True
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("ending", [_close, _reset], ids=["fin", "rst"])
def test_a_server_that_ends_each_kept_alive_connection_after_answering(ending):
    """The server answers as HTTP/1.1 keep-alive, then ends the connection (a FIN, or a reset):
    the pooled connection is found dead before or after the next request is written to it, and
    that request goes out again on a fresh one; concurrent callers never see an error."""
    conns = Connections()
    transport = LeanTransport()

    async def burst() -> list[int]:
        out = []
        for _ in range(5):
            replies = await asyncio.gather(*(transport.request_bytes("127.0.0.1", port, request(), 10)
                                             for _ in range(4)))
            out += [status for status, _ in replies]
        await transport.aclose()
        return out

    with serving(conns.handler(after=ending)) as url:
        port = int(url.rsplit(":", 1)[1])
        loop = uvloop.new_event_loop()
        try:
            assert loop.run_until_complete(burst()) == [200] * 20
        finally:
            loop.close()
    assert all(len(tags) == 1 for tags in conns.seen.values())  # one answer a connection, as the server said


def test_a_request_cancelled_while_its_answer_arrives_closes_its_connection():
    """Cancelled between the answer's head and the end of its body: the connection is closed (the
    server sees it end), never left open outside the pool, and the next request gets a fresh one."""
    head_sent, ended, release = threading.Event(), threading.Event(), threading.Event()
    conns = Connections()

    class Slow(conns.handler()):  # type: ignore[misc]
        def _reply(self) -> None:
            if self.headers.get("x-tag") != "slow":
                return super()._reply()
            conns.seen.setdefault(self.client_address[1], []).append("slow")
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
            self.wfile.flush()
            head_sent.set()
            if self.rfile.read(1) == b"":  # the client closed its end
                ended.set()
            release.wait(30)
            self.close_connection = True

        do_GET = _reply

    transport = LeanTransport()

    async def main() -> int:
        task = asyncio.ensure_future(transport.request_bytes("127.0.0.1", port, request("slow"), 30))
        await asyncio.get_running_loop().run_in_executor(None, head_sent.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.get_running_loop().run_in_executor(None, ended.wait, 30)
        status = (await transport.request_bytes("127.0.0.1", port, request("next"), 10))[0]
        await transport.aclose()
        return status

    with serving(Slow) as url:
        port = int(url.rsplit(":", 1)[1])
        loop = uvloop.new_event_loop()
        try:
            with warnings.catch_warnings(record=True) as caught:  # asyncio's own last resort: "unclosed" at GC
                warnings.simplefilter("always", ResourceWarning)
                assert loop.run_until_complete(main()) == 200
        finally:
            release.set()
            loop.close()
    assert sorted(conns.seen.values()) == [["next"], ["slow"]]
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_kept_alive_connection_dropped_without_an_answer_is_retried_only_when_the_request_can_be_resent():
    """The server answers a connection's first request and drops the connection on its second
    without a byte of answer: a whole body goes out again on a fresh connection (answered there);
    a streamed body, already sent, cannot be, and the caller gets a transport error that says so."""
    import httpx

    class DropsSecond(JsonHandler):
        served = 0

        def _reply(self) -> None:
            self.served += 1
            if self.served == 1:
                return super()._reply()
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def answer(self, body: bytes):
            return 200, {"got": body.decode()}, {}

        do_POST = _reply

    async def chunks():
        yield b"streamed "
        yield b"body"

    async def main() -> tuple[httpx.Response, Exception]:
        async with httpx.AsyncClient(transport=LeanTransport()) as client:
            assert (await client.post(url, content=b"first")).status_code == 200
            whole = await client.post(url, content=b"again")  # dropped on the pooled connection, resent
            with pytest.raises(httpx.RemoteProtocolError) as streamed:
                await client.post(url, content=chunks())  # the pooled connection from the resend
            return whole, streamed.value

    with serving(DropsSecond) as url:
        loop = uvloop.new_event_loop()
        try:
            whole, error = loop.run_until_complete(main())
        finally:
            loop.close()
    assert whole.status_code == 200 and whole.json() == {"got": "again"}
    assert "a streamed body cannot be sent again" in str(error)


def test_a_connection_reset_while_a_streamed_body_is_being_sent_is_a_transport_error():
    """The server resets the connection after the body's first chunk, and the body's source is
    still producing when the transport has closed: the next write is refused (uvloop's
    RuntimeError before) and the caller gets httpx's transport error."""
    import contextlib

    import httpx

    read_first = threading.Event()

    class ResetsMidBody(JsonHandler):
        def do_POST(self) -> None:
            size = int(self.rfile.readline(), 16)
            self.rfile.read(size + 2)
            read_first.set()
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # a reset, with nothing sent first

    class Noting(LeanTransport):
        async def _connect(self, key, timeout):
            conn = await super()._connect(key, timeout)
            opened.append(conn)
            return conn

    opened: list = []

    async def chunks():
        yield b"first"
        with contextlib.suppress(ConnectionError):
            await opened[-1].writer.wait_closed()  # the reset has closed the transport
        yield b"second"

    async def main() -> Exception:
        async with httpx.AsyncClient(transport=Noting()) as client:
            with pytest.raises(httpx.TransportError) as failed:
                await client.post(url, content=chunks())
            return failed.value

    with serving(ResetsMidBody) as url:
        loop = uvloop.new_event_loop()
        try:
            error = loop.run_until_complete(main())
        finally:
            loop.close()
    assert read_first.is_set() and len(opened) == 1
    assert "without a response" in str(error)
