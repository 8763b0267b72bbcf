"""The model endpoint inside a sandbox WITHOUT a network: the official `openai` client runs in the
sandbox (the host's Python, mounted read-only, has it) and a trainer answers through the fast
path (``exchange``), once per backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.agentic.conftest import run_answered, sandbox_with_trainer

CLIENT = r'''
import json, sys
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk-rock", max_retries=0)
out = {"models": [m.id for m in client.models.list()]}
r = client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "say hi"}],
                                   temperature=0.3)
out["plain"] = [r.choices[0].message.content, r.choices[0].finish_reason, r.usage.total_tokens]
parts = []
for chunk in client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "stream"}],
                                            stream=True, stream_options={"include_usage": True}):
    for c in chunk.choices:
        parts.append(["c", c.delta.content, c.finish_reason])
    if chunk.usage:
        parts.append(["u", chunk.usage.total_tokens])
out["stream"] = parts
tools = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object",
          "properties": {"cmd": {"type": "string"}}}}}]
r = client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "tool"}], tools=tools)
tc = r.choices[0].message.tool_calls[0]
out["tool"] = [tc.id, tc.function.name, json.loads(tc.function.arguments), r.choices[0].finish_reason]
with client.chat.completions.stream(model="policy", messages=[{"role": "user", "content": "tool stream"}],
                                    tools=tools) as s:
    final = s.get_final_completion()
tc = final.choices[0].message.tool_calls[0]
out["tool_stream"] = [tc.function.name, json.loads(tc.function.arguments), final.choices[0].finish_reason]
print("RESULT" + json.dumps(out))
'''


def policy(call):
    """A scripted policy: answers by what the last user message says."""
    text = call.request["messages"][-1]["content"]
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if text.startswith("tool"):
        message = {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "call_1", "type": "function",
                                   "function": {"name": "bash", "arguments": json.dumps({"cmd": "ls /"})}}]}
        return {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": usage}
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"hi ({text})"},
                         "finish_reason": "stop"}], "usage": usage}


@pytest.fixture
async def box(admin):
    async with sandbox_with_trainer(admin) as pair:  # network=False: the default
        yield pair


async def test_openai_client_inside_the_sandbox_answered_by_the_trainer(box):
    sandbox, trainer = box
    info = await trainer.start(sandbox.sandbox_id, models=["policy"])
    assert info.port == 8080 and info.base_url == "http://127.0.0.1:8080/v1" and info.mode == "local"
    await sandbox.write_bytes("/tmp/client.py", CLIENT.encode())
    obs, seen = await run_answered(sandbox, trainer, '"$ROCK_HOST_PYTHON" /tmp/client.py', policy)
    assert obs.exit_code == 0, obs.output
    out = json.loads(obs.output.split("RESULT", 1)[1])
    assert out["models"] == ["policy"]
    assert out["plain"] == ["hi (say hi)", "stop", 5]
    assert out["stream"] == [["c", "hi (stream)", None], ["c", None, "stop"], ["u", 5]]
    assert out["tool"] == ["call_1", "bash", {"cmd": "ls /"}, "tool_calls"]
    assert out["tool_stream"] == ["bash", {"cmd": "ls /"}, "tool_calls"]
    assert [c.index for c in seen] == [1, 2, 3, 4]
    assert seen[0].request["temperature"] == 0.3 and seen[1].request["stream"] is True
    assert seen[2].request["tools"][0]["function"]["name"] == "bash"
    # the sandbox has no network: only the endpoint answered it
    r = await sandbox.arun('"$ROCK_HOST_PYTHON" -c "import socket; socket.create_connection((\'1.1.1.1\', 80), 2)"')
    assert r.exit_code != 0
    # every call is recorded outside the sandbox, readable as the trajectory
    records = await trainer.trajectory(sandbox.sandbox_id)
    assert [(r.index, r.status, r.http_status, r.stream) for r in records] == [
        (1, "success", 200, False), (2, "success", 200, True), (3, "success", 200, False), (4, "success", 200, True)]
    first = records[0]
    assert first.request["messages"] == [{"role": "user", "content": "say hi"}] and first.request["temperature"] == 0.3
    assert first.response["choices"][0]["message"]["content"] == "hi (say hi)" and first.usage["total_tokens"] == 5
    assert first.latency_ms > 0 and first.end_time >= first.start_time and first.sandbox_id == sandbox.sandbox_id
    assert records[2].response["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "bash"
    # ... and exportable as ROCK's trajectory JSONL
    lines = [json.loads(x) for x in (await trainer.trajectory_jsonl(sandbox.sandbox_id)).splitlines()]
    assert [sorted(x) for x in lines] == [sorted(["model", "stream", "status", "response_time", "start_time",
                                                  "end_time", "request", "response", "error"])] * 4
    assert lines[1]["stream"] is True and lines[1]["status"] == "success" and lines[1]["model"] == "policy"
    assert lines[0]["response"] == first.response


STREAM_CLIENT = r'''
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk", max_retries=0)
for i in range(3):
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "n%d" % i}])
    print(r.choices[0].message.content)
'''


async def test_the_websocket_fast_path(box, admin):
    sandbox, trainer = box
    await trainer.start(sandbox.sandbox_id)
    await sandbox.write_bytes("/tmp/c.py", STREAM_CLIENT.encode())
    proc = await sandbox.start_process('exec "$ROCK_HOST_PYTHON" /tmp/c.py > /tmp/c.out 2>&1')
    await trainer.watch(sandbox.sandbox_id, proc["pid"])
    answered = await trainer.serve(lambda call: policy(call), sandbox_ids=[sandbox.sandbox_id], websocket=True)
    assert answered == 3
    assert (await sandbox.read_bytes("/tmp/c.out")).decode().split() == ["hi", "(n0)", "hi", "(n1)", "hi", "(n2)"]
    import websockets

    async with websockets.connect(admin.url.replace("http", "ws") + "/apis/v1/chat/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "bogus": 1}))
        msg = json.loads(await ws.recv())
        assert msg["type"] == "error" and msg["status_code"] == 422 and "bogus" in msg["message"]


async def test_the_websocket_with_an_async_policy_and_its_failure(box):
    """An async policy's calls are answered over the WebSocket as they finish; one that raises
    ends serve() with its error (not lost in a background task)."""
    sandbox, trainer = box
    sid = sandbox.sandbox_id
    await trainer.start(sid)
    await sandbox.write_bytes("/tmp/c.py", STREAM_CLIENT.encode())
    proc = await sandbox.start_process('exec "$ROCK_HOST_PYTHON" /tmp/c.py > /tmp/c.out 2>&1')
    await trainer.watch(sid, proc["pid"])

    async def answer(call):
        await asyncio.sleep(0)
        if call.index == 2:
            raise RuntimeError("the policy broke on call 2")
        return policy(call)

    # raised as it happens: not at serve's next deadline (an hour here; 10 s by default), while the
    # sandbox waits for the answer that never comes and no message wakes the loop
    with pytest.raises(RuntimeError, match="broke on call 2"):
        await asyncio.wait_for(trainer.serve(answer, sandbox_ids=[sid], websocket=True, wait=3600), 120)
    records = await trainer.trajectory(sid)
    assert [(r.index, r.status) for r in records] == [(1, "success"), (2, "pending")]
    assert records[0].response["choices"][0]["message"]["content"] == "hi (n0)"


def test_the_sync_twins(admin):
    from rock.sdk.model import SyncChatTrainer
    from rock.sdk.sandbox import SyncSandbox

    from tests.sdk.test_sandbox import config

    sandbox = SyncSandbox(config(admin))
    sandbox.start()
    try:
        with SyncChatTrainer.for_sandbox(sandbox) as trainer:
            assert trainer.start(sandbox.sandbox_id, port=0).port > 0  # any free port
            port = trainer.status(sandbox.sandbox_id).port
            sandbox.write_bytes("/tmp/c.py", STREAM_CLIENT.replace("8080", str(port)).encode())
            proc = sandbox.start_process('exec "$ROCK_HOST_PYTHON" /tmp/c.py > /tmp/c.out 2>&1')
            trainer.watch(sandbox.sandbox_id, proc["pid"])
            assert trainer.serve(policy, sandbox_ids=[sandbox.sandbox_id]) == 3
            assert sandbox.read_bytes("/tmp/c.out").decode().split()[-1] == "(n2)"
            assert len(trainer.trajectory(sandbox.sandbox_id)) == 3
    finally:
        sandbox.delete()
