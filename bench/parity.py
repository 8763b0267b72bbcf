"""rl-rock parity features, timed against a real admin per backend (``rock admin start``):

restart_to_first_output  stop() then restart() -> first arun output, files kept (floor: a fresh
                         start() -> first output on the same admin, in alternating blocks)
proxy_http_round_trip    GET through /sandboxes/{id}/proxy to a server inside a sandbox without a
                         network, over the agent's TCP relay (floor: arun("echo hi") on the same
                         sandbox: one request through the admin to the agent and back). The server
                         speaks HTTP/1.1 with keep-alive, as real ones (uvicorn, vLLM, Jupyter) do,
                         so the admin's kept-alive connection is what is timed. The client
                         is httpx, as users have it
proxy_http_round_trip_lean  the same GETs from a lean keep-alive client (bench.rawhttp), in the
                         same alternating blocks: the proxy's own cost against a command's, with
                         no client heavier than the SDK's own on one side
proxy_http_client_floor  the same httpx GETs to the same server run on the host, no proxy between,
                         in the same alternating blocks: what the client and server cost alone.
                         proxy_http_round_trip carries it (``client_floor_p50_ms``) and the
                         difference (``added_by_proxy_p50_ms``): httpx's own round trip is most of
                         the 1.5 ms target on a slow VM, and only the rest is the proxy's
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import httpx

from bench import rawhttp
from bench.admin import AdminProcess
from bench.report import record
from bench.sdk import _config, _start_to_first_output, isolated
from rock.actions import CreateBashSessionRequest
from rock.sdk.sandbox import Sandbox

BLOCK = 25  # samples per block; blocks of the measured call and its floor alternate
# The server in the sandbox: HTTP/1.1 with keep-alive and TCP_NODELAY, as uvicorn, vLLM and Jupyter
# are (Python's plain http.server speaks HTTP/1.0, a connection per request).
HANDLER = b"""
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a):
        pass
"""
SERVER = HANDLER + b"""
http.server.ThreadingHTTPServer(("127.0.0.1", 8000), lambda *a: H(*a, directory="/srv")).serve_forever()
"""
# The same server on the host, on a free port it prints: the client floor (no proxy between).
HOST_SERVER = HANDLER + b"""
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: H(*a, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class HostServer:
    """HOST_SERVER in a process of its own (not this one's threads, which share the client's GIL)."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="rock-bench-parity-srv-")
        with open(os.path.join(self.dir.name, "index.html"), "wb") as f:
            f.write(b"ok")
        self.proc = subprocess.Popen([sys.executable, "-c", HOST_SERVER, self.dir.name], stdout=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/index.html"

    def __enter__(self) -> "HostServer":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


async def _proxy_blocks(url: str, target: str, sandbox: Sandbox, n: int) -> tuple[list[float], ...]:
    """Alternating blocks: httpx through the proxy, httpx to the host's server, the lean client
    through the proxy, arun echo. Returns their samples in that order."""
    lean = rawhttp.Connection(httpx.URL(url).host, httpx.URL(url).port)
    path = target[len(url):]
    try:
        with HostServer() as host:
            async with httpx.AsyncClient(timeout=30) as http, httpx.AsyncClient(timeout=30) as direct:
                deadline = time.monotonic() + 30
                while (await http.get(target)).status_code != 200:  # the server is coming up
                    assert time.monotonic() < deadline, "the server in the sandbox did not come up"
                await direct.get(host.url)  # its connection, as the proxied client's is open
                gets, direct_gets, lean_gets, echoes = [], [], [], []
                while len(gets) < n:
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        r = await http.get(target)
                        gets.append(time.perf_counter() - t0)
                        assert r.status_code == 200 and r.content == b"ok", r.text
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        r = await direct.get(host.url)
                        direct_gets.append(time.perf_counter() - t0)
                        assert r.status_code == 200 and r.content == b"ok", r.text
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        status, body = await lean.request("GET", path)
                        lean_gets.append(time.perf_counter() - t0)
                        assert status == 200 and body == b"ok", (status, body)
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        await sandbox.arun("echo hi", session="e")
                        echoes.append(time.perf_counter() - t0)
    finally:
        lean.close()
    return gets, direct_gets, lean_gets, echoes


async def _restart_to_first_output(sandbox: Sandbox) -> float:
    await sandbox.stop()
    t0 = time.perf_counter()
    await sandbox.restart()
    await sandbox.create_session(CreateBashSessionRequest(session="b"))
    out = await sandbox.arun("echo hi", session="b")
    elapsed = time.perf_counter() - t0
    assert out.output.strip() == "hi", out
    return elapsed


async def _backend(ctx, backend: str) -> list[dict]:
    with AdminProcess(backend, prefix="rock-bench-parity-") as admin:
        url = admin.url
        records = []
        sandbox = Sandbox(_config(url))
        await sandbox.start()
        await sandbox.write_bytes("/srv/index.html", b"ok")
        await sandbox.write_bytes("/srv/server.py", SERVER)
        await sandbox.start_process(["python3", "/srv/server.py"])
        await _start_to_first_output(url)  # warm-up

        n = ctx.n(6, 30)
        ctx.progress(f"parity {backend}: restart -> first output x{n} (floor: fresh starts)")
        restarts, fresh = [], []
        while len(restarts) < n:
            restarts.append(await _restart_to_first_output(sandbox))
            fresh.append(await _start_to_first_output(url))
        records.append(record("restart_to_first_output", backend, restarts, floor_s=fresh))

        await sandbox.start_process(["python3", "/srv/server.py"])  # the restart ended the first server
        await sandbox.create_session(CreateBashSessionRequest(session="e"))
        target = f"{url}/apis/envs/sandbox/v1/sandboxes/{sandbox.sandbox_id}/proxy/port/8000/index.html"
        n = ctx.n(100, 1000)
        ctx.progress(f"parity {backend}: proxy GET x{n} (floor: arun echo)")
        gets, direct_gets, lean_gets, echoes = await _proxy_blocks(url, target, sandbox, n)
        client_floor = record("proxy_http_client_floor", backend, direct_gets, client="httpx",
                              note="the same server on the host, no proxy: the client's and server's own cost")
        proxied = record("proxy_http_round_trip", backend, gets, floor_s=echoes, client="httpx")
        proxied["client_floor_p50_ms"] = client_floor["p50_ms"]
        proxied["added_by_proxy_p50_ms"] = round(proxied["p50_ms"] - client_floor["p50_ms"], 4)
        records += [proxied, client_floor]
        records.append(record("proxy_http_round_trip_lean", backend, lean_gets, floor_s=echoes,
                              client="bench.rawhttp (keep-alive, httptools), as lean as the SDK's arun"))
        await sandbox.delete()
        await sandbox.aclose()
    return records


async def run(ctx) -> list[dict]:
    # the local backend keeps no files across a stop
    return [r for backend in isolated(ctx) for r in await _backend(ctx, backend)]
