"""The async clients' transport seam: ``Http`` and ``AsyncHttp`` take ``transport=`` (any
``httpx.AsyncBaseTransport``) as ``httpx.AsyncClient`` does, and the SDK's clients built on them
(``Sandbox``, ``ChatTrainer``, the env clients over ``AsyncHttp``) hand it every request. The
transport here records each request and forwards it with httpx's own transport to a real HTTP/1.1
server on loopback, so the answers the SDK decodes came through it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rock.client.http import AsyncHttp, Http
from rock.sdk.envs.client import AsyncEnv
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from tests.client.loopback import JsonHandler, serving

ENDPOINT = {"type": "local", "mode": "local", "port": 8080, "base_url": "http://127.0.0.1:8080/v1",
            "state": "serving", "calls": 3, "ended": False}


class Recording(httpx.AsyncBaseTransport):
    """A caller's transport: notes each request, then sends it with httpx's own."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.inner = httpx.AsyncHTTPTransport()
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, request.headers.get("authorization")))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


@pytest.fixture
def admin():
    """A loopback stand-in for the admin's routes: ROCK's envelope on the sandbox and chat routes,
    raw bodies on the GEM env routes."""

    class Routes(JsonHandler):
        def answer(self, body: bytes) -> tuple[int, dict, dict[str, str]]:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.startswith("/apis/v1/envs/gem/"):
                return 200, {"sandbox_id": "env-1"} if url.path.endswith("/make") else {
                    "observation": [1], "reward": 0.5, "terminated": False, "truncated": False, "info": {}}, {}
            if url.path.startswith("/apis/v1/chat/"):
                return 200, {"status": "Success", "result": ENDPOINT | {"sandbox_id": query.get("sandbox_id")}}, {}
            return 200, {"status": "Success", "result": {"sandbox_id": query.get("sandbox_id"), "is_alive": True,
                                                          "host_name": "node-a", "image": "python:3.11"}}, {}

    with serving(Routes) as url:
        yield url


async def test_the_sandbox_client_sends_through_the_callers_transport(admin):
    transport = Recording()
    sandbox = Sandbox(SandboxConfig(base_url=admin, token="tok"), transport=transport)
    try:
        await sandbox.attach("sb-1")
        alive = await sandbox.is_alive()
        pool = sandbox._context.http.pool
    finally:
        await sandbox.aclose()
    assert pool.transport is transport and not pool.fast
    assert (sandbox.config.image, alive.is_alive, alive.message) == ("python:3.11", True, "node-a")
    assert transport.seen == [("GET", "/apis/envs/sandbox/v1/get_status", "Bearer tok")] * 2
    assert transport.closed  # the client closes the transport it was given, as httpx's does


async def test_the_trainer_and_the_env_client_send_through_the_callers_transport(admin):
    transport = Recording()
    trainer = ChatTrainer(admin, token="tok", transport=transport)
    try:
        info = await trainer.status("sb-2")
    finally:
        await trainer.aclose()
    assert (info.sandbox_id, info.calls) == ("sb-2", 3)
    assert transport.seen == [("GET", "/apis/v1/chat/status", "Bearer tok")]

    transport = Recording()
    http = AsyncHttp(admin, "tok", transport=transport)
    try:
        env = await AsyncEnv.create("game:GuessTheNumber-v0", http=http)
        step = await env.step("[5]")
        twin = http.twin()
        assert twin.transport is transport  # a forked env's pool keeps the caller's transport
    finally:
        await http.aclose()
    assert (env.sandbox_id, step[1]) == ("env-1", 0.5)
    assert transport.seen == [("POST", "/apis/v1/envs/gem/make", "Bearer tok"),
                              ("POST", "/apis/v1/envs/gem/step", "Bearer tok")]


async def test_without_a_transport_the_byte_path_serves_and_the_recorder_sees_nothing(admin):
    # The control: the same client without ``transport=`` takes ROCK's own pool, not the recorder.
    transport = Recording()
    http = Http(admin, {"Authorization": "Bearer tok"}, 10)
    try:
        result = await http.post("/get_status", {})
    finally:
        await http.aclose()
        await transport.aclose()
    assert http.pool.fast and http.pool.lean is not None
    assert result["is_alive"] is True and transport.seen == []
