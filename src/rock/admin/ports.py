"""Reaching servers inside a sandbox: HTTP, WebSocket and raw TCP over the agent's TCP relay.

Nothing here needs the sandbox to have a network: every connection is the agent's
``tcp.connect`` (see rock/agent/tcprelay.py) to a port on the sandbox's loopback. HTTP goes
through httpcore with the relay as its network backend; WebSocket through the sans-I/O
protocol of the ``websockets`` library on the same relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable

import httpcore
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response as WsResponse
from websockets.uri import parse_uri

from rock.errors import BadRequest

log = logging.getLogger("rock.admin.ports")

TARGET_PORT_HEADER = "x-rock-target-port"
# Not forwarded either way: they describe one hop, not the request (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", TARGET_PORT_HEADER}
# The admin's own credentials never enter a sandbox.
CREDENTIALS = {"authorization", "xrl-authorization", "x-key", "cookie"}
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}


def _port(value: str | int, source: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{source} must be a port number, not {value!r}") from None
    if not 0 < port < 65536:
        raise BadRequest(f"{source} must be a port from 1 to 65535, not {port}")
    return port


def resolve_target(headers, query_port: str | None, path: str) -> tuple[int, str]:
    """ROCK's three ways to name the port: ``port/<n>/`` in the path, the X-ROCK-Target-Port
    header, or the ``rock_target_port`` parameter; exactly one. Returns (port, remaining path)."""
    found: list[tuple[str, int, str]] = []
    if path.startswith("port/"):
        parts = path.split("/", 2)
        found.append(("path", _port(parts[1], "the port in the path"), parts[2] if len(parts) > 2 else ""))
    if headers.get(TARGET_PORT_HEADER):
        found.append(("header X-ROCK-Target-Port", _port(headers[TARGET_PORT_HEADER], "X-ROCK-Target-Port"), path))
    if query_port is not None:
        found.append(("query parameter rock_target_port", _port(query_port, "rock_target_port"), path))
    if not found:
        raise BadRequest("no target port: send the X-ROCK-Target-Port header, the rock_target_port parameter, "
                         "or a path starting with port/<n>/")
    if len(found) > 1:
        raise BadRequest("the target port is given more than once: " + ", ".join(f[0] for f in found))
    return found[0][1], found[0][2]


def forwarded_headers(items, drop_credentials: bool) -> list[tuple[bytes, bytes]]:
    out = []
    for key, value in items:
        k = key.lower()
        if k in HOP_BY_HOP or k.startswith("sec-websocket") or (drop_credentials and k in CREDENTIALS):
            continue
        out.append((key.encode("latin-1"), value.encode("latin-1")))
    return out


# -- HTTP ---------------------------------------------------------------------------------------


class _RelayStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream):
        self.stream = stream
        self.buffer = b""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if not self.buffer:
            self.buffer = await asyncio.wait_for(self.stream.read(), timeout)
        data, self.buffer = self.buffer[:max_bytes], self.buffer[max_bytes:]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await asyncio.wait_for(self.stream.write(bytes(buffer)), timeout)

    async def aclose(self) -> None:
        self.stream.close()

    def get_extra_info(self, info: str):
        # httpcore asks before reusing an idle kept-alive connection: bytes (or the end) waiting on
        # an idle connection mean the server closed it, so the pool drops it instead of sending on it.
        if info == "is_readable":
            return bool(self.buffer) or self.stream.readable()
        return None


class _RelayBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer, where every connection is one relay through the agent."""

    def __init__(self, agent):
        self.agent = agent

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _RelayStream(await asyncio.wait_for(self.agent.tcp_connect(port), timeout))

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not proxied")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _PortPool:
    """Kept-alive HTTP connections to one port of one sandbox.

    A new relay costs a ``tcp.connect`` round trip, a thread in the agent and the server's accept:
    several times a request on an open connection. Idle connections are closed after ``idle``
    seconds without a request (each holds a thread in the agent and a socket in the server), and
    the whole pool goes with them, so a sandbox no longer proxied to costs nothing here."""

    def __init__(self, agent, port: int, keep: int, idle: float, forget: Callable[[], None]):
        self.http = httpcore.AsyncConnectionPool(network_backend=_RelayBackend(agent), max_connections=None,
                                                 max_keepalive_connections=keep, keepalive_expiry=idle)
        self.idle = idle
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._forget = forget
        self._timer: asyncio.TimerHandle | None = None

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
        asyncio.ensure_future(self.http.aclose())


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


async def http_request(pools: Pools, agent, port: int, method: str, target: str, headers: list[tuple[bytes, bytes]],
                       body: bytes, timeout: float | None):
    """Send one request to the server on ``port`` over a kept-alive connection from ``pools``;
    returns (status, headers, body iterator, close)."""
    pool = pools.get(agent, port)
    headers = [(b"host", f"127.0.0.1:{port}".encode()), *headers]
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        headers.append((b"content-length", str(len(body)).encode()))
    request = httpcore.Request(method, httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=port,
                                                    target=target.encode()),
                               headers=headers, content=body,
                               extensions={"timeout": {"connect": 10, "read": timeout, "write": 60, "pool": 10}})
    pool.begin()
    try:
        try:
            response = await pool.http.handle_async_request(request)
        except (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError):
            # A kept-alive connection the server closed just as we reused it fails before any
            # answer; a request that may be repeated (RFC 9110 §9.2.2) goes once more, on a new one.
            if method not in IDEMPOTENT:
                raise
            response = await pool.http.handle_async_request(request)
    except BaseException:
        pool.end()
        raise

    async def close() -> None:
        try:
            await response.aclose()  # back to the pool if the server keeps it alive
        finally:
            pool.end()

    return response.status, response.headers, response.aiter_stream(), close


# -- WebSocket --------------------------------------------------------------------------------


async def websocket_proxy(ws: WebSocket, agent, port: int, target: str, drop_credentials: bool) -> None:
    """Accept ``ws`` once the server in the sandbox accepted our handshake, then carry messages."""
    stream = await agent.tcp_connect(port)
    try:
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{target}"),
                                  subprotocols=[p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")
                                                if p.strip()] or None)
        request = protocol.connect()
        for key, value in forwarded_headers(ws.headers.items(), drop_credentials):
            request.headers[key.decode("latin-1")] = value.decode("latin-1")
        protocol.send_request(request)
        await _flush(protocol, stream)
        response = None
        while response is None:
            data = await stream.read()
            if not data:
                protocol.receive_eof()
            else:
                protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, WsResponse):
                    response = event
            if not data and response is None:
                break
        if response is None or protocol.handshake_exc is not None:
            reason = protocol.handshake_exc or "the server closed the connection"
            await ws.close(code=1011, reason=f"the server on port {port} refused the WebSocket: {reason}"[:120])
            return
        await ws.accept(subprotocol=response.headers.get("Sec-WebSocket-Protocol"))
        await _relay_messages(ws, protocol, stream)
    finally:
        stream.close()


async def _flush(protocol: ClientProtocol, stream) -> None:
    for data in protocol.data_to_send():
        if data:
            await stream.write(data)
        else:
            stream.close_write()


async def _relay_messages(ws: WebSocket, protocol: ClientProtocol, stream) -> None:
    async def upstream() -> None:  # client -> sandbox
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("text") is not None:
                    protocol.send_text(msg["text"].encode())
                elif msg.get("bytes") is not None:
                    protocol.send_binary(msg["bytes"])
                await _flush(protocol, stream)
        with contextlib.suppress(Exception):
            protocol.send_close(1000)
            await _flush(protocol, stream)

    async def downstream() -> None:  # sandbox -> client
        parts: list[bytes] = []
        opcode = None
        while True:
            data = await stream.read()
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            for frame in protocol.events_received():
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    opcode, parts = frame.opcode, [frame.data]
                elif frame.opcode == Opcode.CONT:
                    parts.append(frame.data)
                else:
                    continue
                if frame.fin:
                    payload = b"".join(parts)
                    if opcode == Opcode.TEXT:
                        await ws.send_text(payload.decode())
                    else:
                        await ws.send_bytes(payload)
            await _flush(protocol, stream)  # pongs and the close handshake
            if not data or protocol.close_code is not None:
                break
        code = protocol.close_code or 1000
        with contextlib.suppress(Exception):
            await ws.close(code=code if code not in (1005, 1006) else 1000)

    await _race(upstream(), downstream())


# -- raw TCP ------------------------------------------------------------------------------------


async def tcp_over_websocket(ws: WebSocket, agent, port: int) -> None:
    """ROCK's port forwarding: binary messages <-> bytes of one TCP connection in the sandbox.
    Like ROCK, the socket is accepted first, so a failure reaches the client as a close reason."""
    await ws.accept()
    try:
        stream = await agent.tcp_connect(port)
    except Exception as exc:  # noqa: BLE001 - the client learns why in the close reason
        reason = getattr(exc, "message", None) or str(exc)
        await ws.close(code=1011, reason=reason[:120])
        return

    async def upstream() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes") if msg.get("bytes") is not None else (msg.get("text") or "").encode()
                await stream.write(data)
        stream.close_write()

    async def downstream() -> None:
        while data := await stream.read():
            await ws.send_bytes(data)
        with contextlib.suppress(Exception):
            await ws.close(code=1000)

    try:
        await _race(upstream(), downstream())
    finally:
        stream.close()


async def _race(*coros) -> None:
    """Run both directions; when one ends for good, give the other a moment, then stop it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            done2, pending = await asyncio.wait(pending, timeout=5)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
