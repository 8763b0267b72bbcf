"""The client's hot paths against the bare round trip to the same server, on loopback.

hotpath_sync_exchange   ``rock.client.http.SyncHttp.exchange`` (what ``rock.make``'s env steps
                        send), floor: the same request bytes on a blocking socket
hotpath_async_exchange  ``rock.client.http.AsyncHttp.exchange`` (the async and vector env
                        clients), floor: the same bytes on asyncio streams
hotpath_sdk_post        ``rock.client.http.Http.post`` (every enveloped SDK call: the envelope
                        decoded, its result returned), floor: as the async exchange
hotpath_httpx_post      ``httpx.Client.post`` of the same body, floor: as the sync exchange (a
                        reference: what a client over httpx's own transport pays)

The server is a minimal HTTP/1.1 keep-alive responder in a process of its own (one fixed
enveloped answer of an env step's size), so what differs between the sides is the client's own
work. The sides run in alternating blocks (each block in a rotated order), so a busy moment of
the shared machine falls on all of them; ``ratio_to_floor`` is each side's p50 over its floor's.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any, Callable

import httpx

from bench.report import record
from rock.client.http import AsyncHttp, Http, SyncHttp

PATH = "/apis/v1/envs/gem/step"
BODY = {"env_id": "bench-0123456789abcdef", "action": "\\boxed{up}"}
WARMUP = 50

# The responder: answers every request with one fixed envelope, Content-Length framed, keeping
# the connection open. Prints its port when it listens.
SERVER = r"""
import asyncio, json, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
result = {"observation": "You moved up. " * 8, "reward": 0.0, "terminated": False, "truncated": False,
          "info": {"step": 1}}
body = json.dumps({"status": "Success", "message": None, "error": None, "result": result}).encode()
reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.t.write(reply)

async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _request(port: int) -> bytes:
    data = json.dumps(BODY, separators=(",", ":")).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def _read_reply(recv: Callable[[int], bytes], buf: bytes) -> bytes:
    """One whole Content-Length framed reply from ``buf`` and ``recv``; what follows it."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        buf += recv(65536)
    length = int(buf.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buf) < end + 4 + length:
        buf += recv(65536)
    return buf[end + 4 + length:]


class _RawSync:
    """The floor of the blocking side: a kept-alive socket, the request already encoded."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = _request(port)

    def call(self) -> None:
        self.sock.sendall(self.request)
        _read_reply(self.sock.recv, b"")


class _RawAsync:
    """The floor of the async side: kept-alive asyncio streams, the request already encoded."""

    def __init__(self, port: int):
        self.port, self.request = port, _request(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await self.reader.readexactly(length)


def _server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        raise RuntimeError("the loopback responder did not start")
    return proc, int(line)


async def _timed(call: Callable[[], Any], n: int) -> list[float]:
    """``n`` calls' seconds each (``call`` may be blocking or return an awaitable)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = call()
        if asyncio.iscoroutine(out):
            await out
        times.append(time.perf_counter() - t)
    return times


async def run(ctx) -> list[dict]:
    blocks, n = (4, 250) if ctx.quick else (10, 2000)
    proc, port = _server()
    base = f"http://127.0.0.1:{port}"
    sync_http = SyncHttp(base, None, routes="")
    async_http = AsyncHttp(base, None, routes="")
    sdk_http = Http(base, {}, 60.0, prefix="")
    httpx_client = httpx.Client(base_url=base)
    raw_sync, raw_async = _RawSync(port), _RawAsync(port)
    sides: dict[str, Callable[[], Any]] = {
        "raw_sync": raw_sync.call,
        "sync_exchange": lambda: sync_http.exchange(PATH, BODY),
        "httpx_post": lambda: httpx_client.post(PATH, json=BODY),
        "raw_async": raw_async.call,
        "async_exchange": lambda: async_http.exchange(PATH, BODY),
        "sdk_post": lambda: sdk_http.post(PATH, BODY),
    }
    lat: dict[str, list[float]] = {name: [] for name in sides}
    try:
        assert sync_http.exchange(PATH, BODY)[0] == 200 and (await sdk_http.post(PATH, BODY))["reward"] == 0.0
        for name, call in sides.items():
            await _timed(call, WARMUP)
        order = list(sides)
        for b in range(blocks):
            for name in order[b % len(order):] + order[:b % len(order)]:
                lat[name] += await _timed(sides[name], n)
    finally:
        sync_http.close()
        await async_http.aclose()
        await sdk_http.aclose()
        httpx_client.close()
        raw_sync.sock.close()
        if raw_async.writer is not None:
            raw_async.writer.close()
        proc.kill()
        proc.wait()
    floors = {"sync_exchange": "raw_sync", "httpx_post": "raw_sync", "async_exchange": "raw_async",
              "sdk_post": "raw_async"}
    return [record(f"hotpath_{name}", "loopback", lat[name], floor_s=lat[floor], floor=floor, blocks=blocks)
            for name, floor in floors.items()]
