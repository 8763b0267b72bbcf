"""Reaching servers inside a sandbox: HTTP, WebSocket and raw TCP over the agent's TCP relay.

Nothing here needs the sandbox to have a network: every connection is the agent's
``tcp.connect`` (see rock/agent/tcprelay.py) to a port on the sandbox's loopback. HTTP goes
through our kept-alive client on the relay (rock.admin.ports.client); WebSocket through the
sans-I/O protocol of the ``websockets`` library on the same relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response as WsResponse
from websockets.uri import parse_uri

from rock.admin.auth import CREDENTIAL_HEADERS, without_credential_cookies
from rock.errors import BadRequest

log = logging.getLogger("rock.admin.ports")

TARGET_PORT_HEADER = "x-rock-target-port"
# Not forwarded either way: they describe one hop, not the request (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", TARGET_PORT_HEADER}


def parse_port(value: str | int, source: str) -> int:
    """``value`` as a TCP port (1 to 65535); a BadRequest naming ``source`` (where the caller put it) otherwise."""
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
        found.append(("path", parse_port(parts[1], "the port in the path"), parts[2] if len(parts) > 2 else ""))
    if headers.get(TARGET_PORT_HEADER):
        found.append(("header X-ROCK-Target-Port", parse_port(headers[TARGET_PORT_HEADER], "X-ROCK-Target-Port"), path))
    if query_port is not None:
        found.append(("query parameter rock_target_port", parse_port(query_port, "rock_target_port"), path))
    if not found:
        raise BadRequest("no target port: send the X-ROCK-Target-Port header, the rock_target_port parameter, "
                         "or a path starting with port/<n>/")
    if len(found) > 1:
        raise BadRequest("the target port is given more than once: " + ", ".join(f[0] for f in found))
    return found[0][1], found[0][2]


def forwarded_headers(items, drop_credentials: bool) -> list[tuple[bytes, bytes]]:
    """The caller's headers as the server in the sandbox gets them: no hop-by-hop ones, and with
    ``drop_credentials`` none of the admin's credentials (rock.admin.auth.CREDENTIAL_HEADERS, the
    token cookie): the admin's credentials never enter a sandbox."""
    out = []
    for key, value in items:
        k = key.lower()
        if k in HOP_BY_HOP or k.startswith("sec-websocket"):
            continue
        if drop_credentials:
            if k in CREDENTIAL_HEADERS:
                continue
            if k == "cookie":
                value = without_credential_cookies(value)
                if not value:
                    continue
        out.append((key.encode("latin-1"), value.encode("latin-1")))
    return out


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


def forwarded_query(raw: str) -> str:
    """The query string the server inside gets: the caller's, as it was encoded, less our own
    ``rock_target_port`` (decoding and joining again would turn an encoded ``&`` or ``=`` in a
    value into a separator)."""
    return "&".join(part for part in raw.split("&") if part and part.split("=", 1)[0] != "rock_target_port")


def raw_query(scope) -> str:
    # As sent (the request's target is made from it with the same codec: bytes round-trip).
    return scope.get("query_string", b"").decode("utf-8", "surrogateescape")
