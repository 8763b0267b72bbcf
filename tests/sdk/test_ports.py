"""Servers inside a sandbox WITHOUT a network, reached through the admin's port routes (the
agent's TCP relay): HTTP, WebSocket and raw TCP port forwarding, once per backend."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from rock.sdk.sandbox import Sandbox
from tests.sdk.test_sandbox import config, until

# Run with the host's Python (mounted read-only in every sandbox), which has `websockets`.
SERVER = r'''
import http.server, threading, time
from websockets.sync.server import serve

class Echo(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        reply = b"echo:" + body + b" auth=" + str(self.headers.get("authorization")).encode() + \
            b" q=" + self.path.encode()
        self.send_response(201)
        self.send_header("content-type", "text/plain")
        self.send_header("x-from-sandbox", "yes")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

class KeepAlive(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 with keep-alive; answers with the client's port, so a test sees which connection
    # carried a request. An idle connection is closed by the server after 1 s.
    protocol_version = "HTTP/1.1"
    timeout = 1

    def do_GET(self):
        if self.path == "/chunked":  # a body that comes in pieces, after the head
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for i in range(3):
                time.sleep(0.05)
                piece = ("part%d;" % i).encode() * 30000
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/unframed":  # no length, no chunks: the body ends with the connection
            self.send_response(200)
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(b"until-close")
            self.close_connection = True
            return
        if self.path.startswith("/echo"):  # what the request line and headers were, as the server saw them
            reply = (self.requestline + "|" + str(self.headers.get("x-injected"))).encode()
        else:
            reply = str(self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "12345")
        self.send_header("x-head", "yes")
        self.end_headers()

    def log_message(self, *args):
        pass

def ws(conn):
    for message in conn:
        conn.send(("echo:" + message) if isinstance(message, str) else b"bin:" + message)

threading.Thread(target=lambda: serve(ws, "127.0.0.1", 8001).serve_forever(), daemon=True).start()
threading.Thread(target=http.server.ThreadingHTTPServer(("127.0.0.1", 8002), KeepAlive).serve_forever,
                 daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", 8000), lambda *a: Echo(*a, directory="/srv")).serve_forever()
'''


@pytest.fixture
async def served(admin):
    sandbox = Sandbox(config(admin))  # network=False: the default
    await sandbox.start()
    await sandbox.write_bytes("/srv/index.html", b"<h1>inside</h1>")
    await sandbox.write_bytes("/srv/server.py", SERVER.encode())
    await sandbox.start_process('exec "$ROCK_HOST_PYTHON" /srv/server.py')
    base = f"{admin.url}/apis/envs/sandbox/v1/sandboxes/{sandbox.sandbox_id}"
    async with httpx.AsyncClient(timeout=30) as http:
        async def up():
            r = await http.get(f"{base}/proxy/port/8000/index.html")
            return r if r.status_code == 200 else None

        await until(up, timeout=30)
        yield sandbox, base, http
    await sandbox.delete()


async def test_http_to_a_port_inside_a_sandbox_without_network(served):
    sandbox, base, http = served
    assert (await sandbox.arun("cat /sys/class/net/*/operstate 2>/dev/null | wc -l")).output.strip() in ("0", "1")
    for request in (dict(url=f"{base}/proxy/index.html", headers={"X-ROCK-Target-Port": "8000"}),
                    dict(url=f"{base}/proxy/index.html", params={"rock_target_port": 8000}),
                    dict(url=f"{base}/proxy/port/8000/index.html")):
        r = await http.get(**request)
        assert r.status_code == 200 and r.text == "<h1>inside</h1>", r.text
    r = await http.post(f"{base}/proxy/submit", params={"rock_target_port": 8000, "a": "1"}, content=b"payload",
)
    assert r.status_code == 201 and r.headers["x-from-sandbox"] == "yes"
    assert r.text == "echo:payload auth=None q=/submit?a=1"  # rock_target_port is ours, not the server's
    r = await http.get(f"{base}/proxy/missing.html", headers={"X-ROCK-Target-Port": "8000"})
    assert r.status_code == 404  # the server's own answer, passed through
    # errors name what is wrong
    r = await http.get(f"{base}/proxy/index.html")
    assert r.status_code == 400 and "X-ROCK-Target-Port" in r.json()["message"]
    r = await http.get(f"{base}/proxy/port/8000/x", headers={"X-ROCK-Target-Port": "8000"})
    assert r.status_code == 400 and "more than once" in r.json()["message"]
    r = await http.get(f"{base}/proxy/x", headers={"X-ROCK-Target-Port": "99999"})
    assert r.status_code == 400 and "65535" in r.json()["message"]
    r = await http.get(f"{base}/proxy/x", headers={"X-ROCK-Target-Port": "8009"})
    assert r.status_code == 502 and "port 8009" in r.json()["message"]
    r = await http.get(f"{base}/portforward", params={"port": 8000})
    assert r.status_code == 426 and "WebSocket" in r.json()["message"]


async def test_http_connections_are_kept_alive_and_renewed(served):
    """Requests to one port ride one kept-alive connection into the sandbox (no relay connect per
    request); one the server closed while idle is replaced, and the request still succeeds."""
    sandbox, base, http = served
    url = f"{base}/proxy/port/8002/"
    clients = [(await http.get(url)).text for _ in range(5)]
    assert all(c.isdigit() for c in clients), clients
    assert len(set(clients)) == 1, f"each request opened a new connection: {clients}"
    await asyncio.sleep(1.5)  # the server's idle timeout (1 s) passes: it closes the connection
    r = await http.get(url)
    assert r.status_code == 200 and r.text.isdigit() and r.text != clients[0], r.text
    # many at once: each gets its own connection, and all answer
    answers = await asyncio.gather(*(http.get(url) for _ in range(12)))
    assert all(a.status_code == 200 and a.text.isdigit() for a in answers)


async def test_http_answers_of_every_framing(served):
    """HEAD, a chunked body that comes after the head, a body that runs to the end of the
    connection, a path that tries to add a header, and an encoded query: each arrives as the server
    meant it."""
    sandbox, base, http = served
    url = f"{base}/proxy/port/8002"
    for _ in range(2):  # twice: the kept-alive connection is still good after each
        r = await http.head(f"{url}/")
        assert (r.status_code, r.headers["x-head"], r.headers["content-length"], r.content) == (200, "yes", "12345", b"")
        r = await http.get(f"{url}/chunked")
        assert r.status_code == 200 and r.content == b"".join(b"part%d;" % i * 30000 for i in range(3))
        r = await http.get(f"{url}/unframed")
        assert r.status_code == 200 and r.content == b"until-close"
        r = await http.get(f"{url}/")
        assert r.status_code == 200 and r.text.isdigit()
    r = await http.get(f"{url}/echo%20x%0DX-Injected:%201%09")
    assert r.status_code == 200 and r.text.endswith("|None"), r.text  # no header was added
    assert r.text.startswith("GET /echo%20x%0DX-Injected:%201%09 HTTP/1.1|"), r.text
    r = await http.get(f"{url}/echo%0D%0AX-Injected:%201")  # a line break matches no route at all
    assert r.status_code == 404 and "no such route" in r.json()["message"], r.text
    # The query as the caller encoded it (an encoded & or = stays inside its value), less our own port
    r = await http.get(f"{base}/proxy/echo?q=a%26b%3Dc&rock_target_port=8002&x=1+2&e")
    assert r.text.startswith("GET /echo?q=a%26b%3Dc&x=1+2&e HTTP/1.1|"), r.text


async def test_websocket_and_raw_tcp(served):
    sandbox, base, _ = served
    url = base.replace("http://", "ws://") + "/proxy/chat"
    async with websockets.connect(url, additional_headers={"X-ROCK-Target-Port": "8001"}) as ws:
        await ws.send("hello")
        assert await ws.recv() == "echo:hello"
        await ws.send(b"\x00\xff" * 40000)  # larger than one relay chunk and one frame read
        assert await ws.recv() == b"bin:" + b"\x00\xff" * 40000
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(url):  # no port: refused before the upgrade completes
            pass
    # raw TCP: ROCK's port forwarding
    url = base.replace("http://", "ws://") + "/portforward?port=8000"
    async with websockets.connect(url) as ws:
        await ws.send(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        received = b""
        try:
            while True:
                received += await asyncio.wait_for(ws.recv(), 10)
        except websockets.exceptions.ConnectionClosedOK:
            pass
    assert received.startswith(b"HTTP/1.0 200") and received.endswith(b"<h1>inside</h1>")
    with pytest.raises(websockets.exceptions.ConnectionClosedError) as err:
        async with websockets.connect(base.replace("http://", "ws://") + "/portforward?port=8009") as ws:
            await ws.recv()
    assert "8009" in (err.value.rcvd.reason if err.value.rcvd else "")
