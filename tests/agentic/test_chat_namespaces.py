"""Tokens and namespaces on the Chat routes: another token cannot see, answer or stop a sandbox's
model calls, nor read its trajectory; its exchange never receives them."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.admin.harness import Admin

TOKENS = {"token-alice": "alice", "token-bob": "bob"}
CALL = ('import json, urllib.request; urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080/v1/chat/'
        'completions", json.dumps({"messages": [{"role": "user", "content": "secret"}]}).encode(), '
        '{"content-type": "application/json"}), timeout=60).read()')


@pytest.fixture(scope="module")
def secured(admin):
    server = Admin(admin.backend, tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


async def test_another_namespace_cannot_touch_the_model_endpoint(secured):
    alice = Sandbox(SandboxConfig(base_url=secured.url, token="token-alice", memory="512m", cpus=1))
    await alice.start()
    trainer = ChatTrainer.for_sandbox(alice)
    bob = ChatTrainer(secured.url, token="token-bob")
    try:
        sid = alice.sandbox_id
        with pytest.raises(Exception) as err:  # bob cannot start one in alice's sandbox
            await bob.start(sid)
        assert getattr(err.value, "status_code", None) == 404
        # a token holder cannot make the admin connect wherever they like (its own loopback here)
        with pytest.raises(Exception) as err:
            await trainer.start(sid, type="proxy", proxy_base_url=f"{secured.url}/apis/v1")
        assert getattr(err.value, "status_code", None) == 400 and "chat_proxy_urls" in str(err.value)
        await trainer.start(sid)
        await alice.write_bytes("/tmp/call.py", CALL.encode())
        run = asyncio.ensure_future(alice.arun('"$ROCK_HOST_PYTHON" /tmp/call.py', timeout=60))
        assert (await bob.exchange(wait=1)).calls == []  # bob's queue never holds alice's calls
        mine = await trainer.exchange(wait=30, sandbox_ids=[sid])
        assert mine.calls[0].request["messages"][0]["content"] == "secret"
        reply = {"choices": [{"message": {"role": "assistant", "content": "bob was here"}}]}
        late = await bob.exchange([{"sandbox_id": sid, "index": 1, "response": reply}], wait=0)
        assert late.rejected[0].status == 404
        with httpx.Client(base_url=secured.url + "/apis/v1/chat", headers={"Authorization": "Bearer token-bob"}) as h:
            for method, route, args in (
                    ("POST", "/answer", {"sandbox_id": sid, "index": 1, "response": reply}),
                    ("POST", "/anti_call_llm", {"sandbox_id": sid, "index": 0, "call_timeout": 1}),
                    ("POST", "/watch", {"sandbox_id": sid, "pid": 1}), ("POST", "/stop", {"sandbox_id": sid}),
                    ("GET", "/status", {"sandbox_id": sid}), ("GET", "/trajectory", {"sandbox_id": sid})):
                r = h.request(method, route, **({"json": args} if method == "POST" else {"params": args}))
                assert r.status_code == 404, (route, r.status_code, r.text)
            assert httpx.get(secured.url + "/apis/v1/chat/status", params={"sandbox_id": sid}).status_code == 401
        await trainer.answer(sid, 1, {"choices": [{"message": {"role": "assistant", "content": "alice's"}}]})
        assert (await run).exit_code == 0
        records = await trainer.trajectory(sid)
        assert records[0].response["choices"][0]["message"]["content"] == "alice's"
    finally:
        await bob.aclose()
        await trainer.aclose()
        await alice.delete()
