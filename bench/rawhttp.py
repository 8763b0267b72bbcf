"""A load generator's HTTP/1.1 client: keep-alive connections, JSON bodies, responses framed by
Content-Length (what the admin sends), parsed by httptools (uvicorn's own parser). Nothing else.

Why not httpx (what the SDK uses): on this 2-core VM httpx spent ~4.6 ms of CPU per request in
the scale burst, twice the admin's own cost per placement, so a burst through it measured the
client. This one costs a few tens of microseconds; the admin is then what the burst measures.
"""

from __future__ import annotations

import asyncio
import json

import httptools


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """One request, answered before the next goes out on this connection; reconnects once
        if the server had closed the connection while it sat idle."""
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        for attempt in (0, 1):
            if self.writer is None:
                await self._open()
            try:
                self.writer.write(head + data)
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        done, parts = [], []

        class Sink:
            def on_body(self, chunk: bytes) -> None:
                parts.append(chunk)

            def on_message_complete(self) -> None:
                done.append(True)

        parser = httptools.HttpResponseParser(Sink())
        while not done:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            parser.feed_data(chunk)
        return parser.get_status_code(), b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Pool:
    """``size`` keep-alive connections shared by any number of tasks, each request on a free one.

    httpx's pool, with a thousand requests waiting for 256 connections, spent more CPU than the
    admin and the sandboxes of the burst it drove (cluster bench: 63-98 s of 157-245 s); a
    queue of connections costs nothing per waiting request."""

    def __init__(self, url: str, size: int):
        host, port = url.split("://", 1)[-1].rstrip("/").rsplit(":", 1)
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        self.conns = [Connection(host, int(port)) for _ in range(size)]
        for conn in self.conns:
            self.free.put_nowait(conn)

    async def post(self, path: str, body: dict, timeout: float = 600) -> tuple[int, dict]:
        """POST a JSON body; the status and the decoded JSON answer."""
        conn = await self.free.get()
        try:
            status, data = await asyncio.wait_for(conn.request("POST", path, body), timeout)
        except BaseException:
            conn.close()  # half a response may be on it: the next request reconnects
            raise
        finally:
            self.free.put_nowait(conn)
        return status, json.loads(data)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
