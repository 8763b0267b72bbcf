"""The blocking client's transport seam: ``SyncPool`` (under ``SyncHttp`` and the gym client) runs
over an ``httpx.BaseTransport``. A caller's transport (``httpx.MockTransport``) takes every call,
and the default ``SyncTransport`` serves an ``httpx.Client`` and the pool's byte path against a
real HTTP/1.1 server on loopback, keeping its connection alive."""

from __future__ import annotations

import json

import httpx
import pytest

from rock.client.config import ClientConfig
from rock.client.http import SyncHttp
from rock.client.pools import SyncPool
from rock.client.sync_transport import SyncTransport
from rock.errors import EnvError
from tests.client.loopback import JsonHandler, serving


def test_a_mock_transport_takes_the_pools_calls():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, content=b'{"ok":1}')

    pool = SyncPool(ClientConfig("http://admin.test:9", "tok"), "/apis/v1/envs/gym", transport=httpx.MockTransport(answer))
    try:
        assert pool.send("POST", "/step", b'{"a":1}') == (201, b'{"ok":1}')
        assert pool.send("PUT", "/raw", b"\x00", "application/octet-stream")[0] == 201
    finally:
        pool.close()
    assert [(r.method, str(r.url)) for r in seen] == [("POST", "http://admin.test:9/apis/v1/envs/gym/step"),
                                                      ("PUT", "http://admin.test:9/apis/v1/envs/gym/raw")]
    assert seen[0].content == b'{"a":1}' and seen[0].headers["authorization"] == "Bearer tok"
    assert (seen[0].headers["content-type"], seen[1].headers["content-type"]) == ("application/json",
                                                                                  "application/octet-stream")


def test_sync_http_over_a_mock_transport_raises_the_envs_error():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/missing"):
            body = {"status": "Failed", "message": "no such env", "result": {"error_type": "EnvNotFound"}}
            return httpx.Response(404, json=body)
        return httpx.Response(200, content=request.content[::-1])

    client = SyncHttp("http://admin.test:9", None, transport=httpx.MockTransport(answer))
    try:
        assert client.post("/echo", {"x": 1}) == b'}1:"x"{'
        with pytest.raises(EnvError) as caught:
            client.post("/missing", {})
        assert (caught.value.kind, caught.value.status_code) == ("EnvNotFound", 404)
    finally:
        client.close()


@pytest.fixture
def server():
    """A real HTTP/1.1 server on loopback that echoes what it got and the client's port (the same
    port on two calls means one kept-alive connection)."""

    class Echo(JsonHandler):
        def answer(self, body: bytes) -> tuple[int, dict, dict[str, str]]:
            return 404 if self.path.endswith("/missing") else 200, {
                "method": self.command, "path": self.path, "body": body.decode(),
                "auth": self.headers.get("Authorization"), "port": self.client_address[1]}, {"X-Seen": "yes"}

    with serving(Echo) as url:
        yield url


def test_httpx_client_over_the_sync_transport_on_loopback(server):
    transport = SyncTransport(timeout=10, shared=False)
    with httpx.Client(base_url=server, transport=transport) as client:
        first = client.post("/a?q=1", content=b"hello", headers={"Authorization": "Bearer t"})
        second = client.get("/missing")
    assert first.status_code == 200 and first.headers["x-seen"] == "yes"
    assert {k: first.json()[k] for k in ("method", "path", "body", "auth")} == {
        "method": "POST", "path": "/a?q=1", "body": "hello", "auth": "Bearer t"}
    assert second.status_code == 404 and second.json()["method"] == "GET"
    assert first.json()["port"] == second.json()["port"]  # the connection was kept alive


def test_the_default_pool_takes_the_byte_path_on_loopback(server):
    pool = SyncPool(ClientConfig(server, "tok", read_timeout=10), "/r", shared=False)
    try:
        assert isinstance(pool.transport, SyncTransport) and pool.lean
        first = json.loads(pool.send("POST", "/x", b"{}")[1])
        status, raw = pool.send("POST", "/missing", b"1")
    finally:
        pool.close()
    assert (first["path"], first["auth"], status) == ("/r/x", "Bearer tok", 404)
    assert json.loads(raw)["port"] == first["port"]


async def test_the_async_pool_takes_a_transport_the_same_way():
    from rock.client.pools import AsyncPool

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "Success", "result": {"n": len(seen)}})

    pool = AsyncPool(ClientConfig("http://admin.test:9", "tok"), "/apis", transport=httpx.MockTransport(answer))
    try:
        assert pool.lean is None and not pool.fast
        status, raw = await pool.send("/x", b'{"a":1}')
    finally:
        await pool.aclose()
    assert (status, json.loads(raw)["result"]) == (200, {"n": 1})
    assert (str(seen[0].url), seen[0].content, seen[0].headers["authorization"]) == (
        "http://admin.test:9/apis/x", b'{"a":1}', "Bearer tok")
