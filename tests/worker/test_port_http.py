"""The port proxy's HTTP client (rock.admin.ports.client) against a real server in a real sandbox,
over the agent's TCP relay: kept-alive reuse, a read timeout, a server that stops mid-answer,
a non-idempotent request on a connection the server dropped, and an answer that is not HTTP."""

from __future__ import annotations

import asyncio

import pytest

from rock.admin.ports import client as port_http

PORT = 8123
SERVER = r'''
import socket, threading, time
def serve(conn):
    f = conn.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        path = line.split()[1]
        while f.readline() not in (b"\r\n", b""):
            pass
        if path == b"/stall":
            time.sleep(5)
        if path == b"/cut":  # promises 100 bytes, sends 5, hangs up
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
            conn.close()
            return
        if path == b"/garbage":
            conn.sendall(b"this is not http\r\n\r\n")
            conn.close()
            return
        port = str(conn.getpeername()[1]).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(port), port))
        if path == b"/once":  # answers, then drops the kept-alive connection
            conn.close()
            return
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", PORT)); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''.replace("PORT", str(PORT))


@pytest.fixture(scope="module")
async def served(box):
    await box.write_file("/tmp/porthttp.py", SERVER.encode())
    await box.proc_start('exec "$ROCK_HOST_PYTHON" /tmp/porthttp.py', shell=True)
    pools = port_http.Pools(keep=4, idle=30)
    for _ in range(100):
        try:
            answer = await port_http.request(pools, box, PORT, "GET", "/", [], b"", 5)
            await answer.aclose()
            break
        except Exception:  # noqa: BLE001 - not listening yet
            await asyncio.sleep(0.1)
    yield box, pools


async def _get(box, pools, path: str, method: str = "GET", timeout: float | None = 5) -> tuple[int, bytes]:
    answer = await port_http.request(pools, box, PORT, method, path, [], b"", timeout)
    body = answer.body if answer.complete else b"".join([c async for c in answer.chunks()])
    await answer.aclose()
    return answer.status, body


async def test_kept_alive_connection_is_reused(served):
    box, pools = served
    ports = {(await _get(box, pools, "/"))[1] for _ in range(5)}
    assert len(ports) == 1, ports  # one connection carried all five


async def test_read_timeout_and_broken_answers_are_errors(served):
    box, pools = served
    with pytest.raises(port_http.ProxyError, match="no answer within"):
        await _get(box, pools, "/stall", timeout=0.5)
    with pytest.raises(port_http.ProxyError, match="closed the connection"):
        await _get(box, pools, "/cut")
    with pytest.raises(port_http.ProxyError, match="not valid HTTP"):
        await _get(box, pools, "/garbage")
    assert (await _get(box, pools, "/"))[0] == 200  # and the next request is fine


async def test_a_dropped_connection_is_replaced(served):
    box, pools = served
    first = (await _get(box, pools, "/once"))[1]  # the server closes this connection after answering
    await asyncio.sleep(0.2)
    status, second = await _get(box, pools, "/")  # idempotent: goes on a new connection
    assert status == 200 and second != first
    status, third = await _get(box, pools, "/", method="POST")  # a kept-alive connection the server still holds
    assert status == 200 and third == second
