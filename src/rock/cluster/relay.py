"""The data path between an admin (or proxy) and a node: one TCP connection per sandbox, spliced
by the node's worker onto that sandbox's agent socket. The bytes on it are the agent's own
frames, so the admin's ``AgentClient`` works over it unchanged; the node only reads the first
frame (``relay.open`` with the node's token and the sandbox id) and then copies bytes both ways.

A second kind of connection (``relay.ping``) is the heartbeat: the admin asks each node twice a
second for its load; a node whose worker died answers with a reset at once, a node that hangs
or whose machine went away misses its deadlines.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Callable

from rock.agent import protocol
from rock.errors import AgentGone, SandboxNotFound
from rock.worker.agent_client import AgentClient, _Proto

log = logging.getLogger("rock.cluster.relay")
HIGH_WATER = 1 << 20  # bytes buffered toward one side before the other side stops being read


class _Splice(asyncio.Protocol):
    """One side of a spliced pair: what it reads goes to ``other``; full buffers pause the reader."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.other: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.other.write(data)

    def pause_writing(self) -> None:
        if self.other is not None:
            self.other.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None:
            self.other.resume_reading()

    def connection_lost(self, exc) -> None:
        if self.other is not None:
            self.other.close()


class _Incoming(_Splice):
    """A connection from an admin: the first frame says what it wants."""

    def __init__(self, server: "RelayServer"):
        super().__init__()
        self.server = server
        self.buf = bytearray()
        self.reader: protocol.FrameReader | None = None  # control connections only

    def data_received(self, data: bytes) -> None:
        if self.other is not None:
            self.other.write(data)
            return
        if self.reader is not None:
            self._control(data)
            return
        self.buf += data
        if len(self.buf) < protocol.HEADER.size:
            return
        try:
            meta_len, body_len = protocol.parse_header(self.buf)
            end = protocol.HEADER.size + meta_len + body_len
            if len(self.buf) < end:
                return
            meta = protocol.decode_meta(bytes(self.buf[protocol.HEADER.size:protocol.HEADER.size + meta_len]))
        except protocol.ProtocolError:
            self.transport.close()
            return
        rest, self.buf = bytes(self.buf[end:]), bytearray()
        args = meta.get("args") or {}
        if not hmac.compare_digest(str(args.get("token", "")), self.server.token):
            self._reply(meta["id"], error=("Forbidden", "wrong relay token"))
            self.transport.close()
        elif meta.get("op") == "relay.ping":
            self.reader = protocol.FrameReader()
            self._reply(meta["id"], result=self.server.load())
            if rest:
                self._control(rest)
        elif meta.get("op") == "relay.open":
            self.transport.pause_reading()
            asyncio.ensure_future(self._open(meta["id"], str(args.get("sandbox_id", "")), rest))
        else:
            self._reply(meta["id"], error=("BadRequest", f"unknown relay op {meta.get('op')!r}"))
            self.transport.close()

    def _control(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except protocol.ProtocolError:
            self.transport.close()
            return
        for meta, _ in frames:
            self._reply(meta["id"], result=self.server.load())

    async def _open(self, rid: int, sandbox_id: str, rest: bytes) -> None:
        try:
            path = self.server.socket_path(sandbox_id)
            loop = asyncio.get_running_loop()
            unix, side = await loop.create_unix_connection(_Splice, path)
        except Exception as exc:  # noqa: BLE001 - the admin gets the reason as the hello's error
            kind = type(exc).__name__ if isinstance(exc, (SandboxNotFound, AgentGone)) else "AgentGone"
            self._reply(rid, error=(kind, getattr(exc, "message", None) or str(exc)))
            self.transport.close()
            return
        if self.transport.is_closing():
            unix.close()
            return
        side.other, self.other = self.transport, unix
        self._reply(rid, result={})
        if rest:
            unix.write(rest)
        self.transport.resume_reading()

    def _reply(self, rid: int, result: dict | None = None, error: tuple[str, str] | None = None) -> None:
        if error is None:
            self.transport.write(protocol.encode({"id": rid, "ok": True, "result": result}))
        else:
            self.transport.write(protocol.encode({"id": rid, "ok": False, "error": {"type": error[0], "message": error[1]}}))


class RelayServer:
    def __init__(self, socket_path: Callable[[str], str], load: Callable[[], dict], token: str | None = None):
        self.socket_path = socket_path
        self.load = load
        self.token = token or os.urandom(16).hex()
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int = 0) -> int:
        self.server = await asyncio.get_running_loop().create_server(lambda: _Incoming(self), host, port,
                                                                     reuse_address=True)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


# -- the admin's side -----------------------------------------------------------------------------


async def _connect(address: str, op: str, args: dict, timeout: float) -> tuple[AgentClient, dict]:
    host, _, port = address.rpartition(":")
    client = AgentClient()
    loop = asyncio.get_running_loop()
    try:
        client.transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Proto(client), host.strip("[]"), int(port)), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise AgentGone(f"cannot reach the node's worker at {address}: {getattr(exc, 'strerror', None) or exc or 'timeout'}") from None
    try:
        result, _ = await asyncio.wait_for(client.call(op, args), timeout)
    except BaseException:
        client.close()
        raise
    return client, result


async def open_agent(address: str, token: str, sandbox_id: str, timeout: float = 30.0) -> AgentClient:
    """An agent client for ``sandbox_id`` through its node's relay."""
    try:
        client, _ = await _connect(address, "relay.open", {"token": token, "sandbox_id": sandbox_id}, timeout)
    except asyncio.TimeoutError:
        raise AgentGone(f"the node's worker at {address} did not answer within {timeout:g}s") from None
    return client


async def open_control(address: str, token: str, timeout: float = 5.0) -> tuple[AgentClient, dict]:
    """The heartbeat connection to a node, and its first answer."""
    return await _connect(address, "relay.ping", {"token": token}, timeout)
