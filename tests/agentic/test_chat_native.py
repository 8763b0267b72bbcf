"""Anthropic's Messages and OpenAI's Responses APIs on the model endpoint, parsed by the vendors'
own clients (``anthropic`` 2.14.0, ``openai`` 3.57.0, from their env image: clients_image.py)
INSIDE a sandbox without a network, answered by the trainer over its WebSocket, once per
backend: JSON and streams, tool calls round-tripping both ways, ``previous_response_id``, a
malformed content block answered 400 in Anthropic's shape (the endpoint goes on), native answers,
and the records (chat form plus the native request and response)."""

from __future__ import annotations

import asyncio
import json

import pytest

from rock.envs.errors import EnvError
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from tests.agentic import clients_image
from tests.agentic.conftest import run_answered
from tests.agentic.test_mini_swe_agent import keep_unpacked

CLIENT = r'''
import json, anthropic, openai
out = {}
a = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key="sk-rock", max_retries=0)
TOOLS = [{"name": "bash", "description": "run a command",
          "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
m = a.messages.create(model="policy", max_tokens=64, system="be brief", messages=[{"role": "user", "content": "say hi"}])
out["m_plain"] = [m.content[0].type, m.content[0].text, m.stop_reason, m.usage.input_tokens, m.usage.output_tokens]
with a.messages.stream(model="policy", max_tokens=64, messages=[{"role": "user", "content": "stream"}]) as s:
    texts = list(s.text_stream)
    final = s.get_final_message()
out["m_stream"] = [texts, final.content[0].text, final.stop_reason, final.usage.output_tokens]
out["m_events"] = [e.type for e in a.messages.create(model="policy", max_tokens=64, stream=True,
                                                      messages=[{"role": "user", "content": "tool"}], tools=TOOLS)]
first = a.messages.create(model="policy", max_tokens=64, messages=[{"role": "user", "content": "tool"}], tools=TOOLS)
use = [b for b in first.content if b.type == "tool_use"][0]
out["m_tool"] = [first.stop_reason, use.name, use.input, use.id]
history = [{"role": "user", "content": "tool"}, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
           {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "bin etc"}]}]
with a.messages.stream(model="policy", max_tokens=64, messages=history, tools=TOOLS) as s:
    final = s.get_final_message()
out["m_tool_back"] = [final.content[0].text, final.stop_reason]
with a.messages.stream(model="policy", max_tokens=64, messages=[{"role": "user", "content": "tool"}], tools=TOOLS) as s:
    final = s.get_final_message()
out["m_tool_stream"] = [[b.type for b in final.content], final.content[-1].input, final.stop_reason]
try:
    a.messages.create(model="policy", max_tokens=64, messages=[{"role": "user", "content": [{"type": "tool_result"}]}])
    out["m_bad"] = "no error"
except anthropic.BadRequestError as exc:
    out["m_bad"] = [exc.status_code, exc.body]
# more malformed blocks, JSON and streamed: each a 400 naming the block, the endpoint going on
BAD = {"untyped": ([{"role": "user", "content": [{"text": "no type"}]}], False),
       "input": ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
           {"type": "tool_use", "id": "t1", "name": "bash", "input": "ls"}]}], False),
       "text": ([{"role": "user", "content": [{"type": "text", "text": 5}]}], True)}
out["m_bad_more"] = {}
for name, (turns, stream) in BAD.items():
    try:
        a.messages.create(model="policy", max_tokens=64, messages=turns, stream=stream)
        out["m_bad_more"][name] = "no error"
    except anthropic.BadRequestError as exc:
        out["m_bad_more"][name] = [exc.status_code, exc.body["error"]["message"]]
m = a.messages.create(model="policy", max_tokens=64, messages=[{"role": "user", "content": "native"}])
out["m_native"] = [m.content[0].text, m.stop_reason, m.id]
out["m_count"] = a.messages.count_tokens(model="policy", messages=[{"role": "user", "content": "x" * 40}]).input_tokens

o = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk-rock", max_retries=0)
FN = [{"type": "function", "name": "bash", "description": "run a command",
       "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
r = o.responses.create(model="policy", instructions="be brief", input="say hi")
out["r_plain"] = [r.output_text, r.status, r.usage.total_tokens]
with o.responses.stream(model="policy", input="stream") as s:
    kinds = [e.type for e in s]
    final = s.get_final_response()
out["r_stream"] = [kinds, final.output_text, final.status]
r1 = o.responses.create(model="policy", input="tool", tools=FN)
fc = r1.output[0]
out["r_tool"] = [fc.type, fc.name, json.loads(fc.arguments), fc.call_id]
with o.responses.stream(model="policy", previous_response_id=r1.id, tools=FN,
                        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "bin etc"}]) as s:
    final = s.get_final_response()
out["r_tool_back"] = [final.output_text, final.previous_response_id]
with o.responses.stream(model="policy", input="tool", tools=FN) as s:
    kinds = [e.type for e in s]
    final = s.get_final_response()
out["r_tool_stream"] = [kinds, final.output[0].type, json.loads(final.output[0].arguments)]
r = o.responses.create(model="policy", input=[{"role": "user", "content": [{"type": "input_text", "text": "native"}]}])
out["r_native"] = [r.output_text, r.status]
try:
    o.responses.create(model="policy", input="x", previous_response_id="resp_unknown")
    out["r_bad"] = "no error"
except openai.BadRequestError as exc:
    out["r_bad"] = [exc.status_code, exc.body]
print("RESULT" + json.dumps(out))
'''


def policy(call):
    """Scripted, by the chat form every call reaches the trainer in."""
    messages = call.request["messages"]
    last = messages[-1]
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    if last["role"] == "tool":  # a tool result came back: the assistant's call is in the history before it
        asked = messages[-2]["tool_calls"][0]
        assert asked["function"]["name"] == "bash" and json.loads(asked["function"]["arguments"]) == {"cmd": "ls /"}
        return {"choices": [{"message": {"role": "assistant", "content": f"saw {last['content']}"}}], "usage": usage}
    text = last["content"] if isinstance(last["content"], str) else last["content"][0]["text"]
    if text == "tool":
        return {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "ls /"}'}}]}}],
            "usage": usage}
    if text == "native":  # the API's own object
        if call.native["api"] == "messages":
            return {"type": "message", "content": [{"type": "text", "text": "native message"}],
                    "usage": {"input_tokens": 1, "output_tokens": 2}}
        return {"object": "response", "output": [{"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "native response"}]}]}
    return {"choices": [{"message": {"role": "assistant", "content": f"hi ({text})"}}], "usage": usage}


@pytest.fixture(scope="session")
def clients() -> str:
    try:
        image = asyncio.run(clients_image.ensure_image(progress=lambda line: print("[clients image]", line)))
    except EnvError as exc:
        pytest.fail(f"the vendor clients' env image could not be built ({exc.message})")
    keep_unpacked(image.tag)
    return image.tag


async def test_vendor_clients_inside_the_sandbox(admin, clients):
    sandbox = Sandbox(SandboxConfig(base_url=admin.url, image=clients, network=False, memory="1g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        await trainer.start(sandbox.sandbox_id, models=["policy"])
        await sandbox.write_bytes("/tmp/client.py", CLIENT.encode())
        obs, seen = await run_answered(sandbox, trainer, "PYTHONPATH=/opt/rock/site python3 /tmp/client.py", policy,
                                       websocket=True)  # the exchange loop: test_trajectories.py
        assert obs.exit_code == 0, obs.output
        out = json.loads(obs.output.split("RESULT", 1)[1])
        records = await trainer.trajectory(sandbox.sandbox_id)
    finally:
        await trainer.aclose()
        await sandbox.delete()

    # Messages: JSON, stream (the SDK's accumulator), the event sequence, tools both ways
    assert out["m_plain"] == ["text", "hi (say hi)", "end_turn", 7, 3]
    assert out["m_stream"] == [["hi (stream)"], "hi (stream)", "end_turn", 3]
    assert out["m_events"] == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                               "message_delta", "message_stop"]
    assert out["m_tool"] == ["tool_use", "bash", {"cmd": "ls /"}, "call_7"]
    assert out["m_tool_back"] == ["saw bin etc", "end_turn"]
    assert out["m_tool_stream"] == [["tool_use"], {"cmd": "ls /"}, "tool_use"]
    status, body = out["m_bad"]
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].tool_use_id must be a string" in body["error"]["message"]
    said = out["m_bad_more"]
    assert "messages[0].content[0] must be a content block (an object with a 'type')" in said["untyped"][1], said
    assert "messages[1].content[0].input must be an object" in said["input"][1], said
    assert "messages[0].content[0].text must be a string" in said["text"][1], said  # streamed: refused before it
    assert {status for status, _ in said.values()} == {400}, said
    assert out["m_native"][:2] == ["native message", "end_turn"] and out["m_native"][2].startswith("msg_")
    assert out["m_count"] == (len('[{"role":"user","content":"%s"}]' % ("x" * 40)) + 3) // 4  # about four bytes a token
    # Responses: JSON, stream events, function calls both ways (stateful and stateless)
    assert out["r_plain"] == ["hi (say hi)", "completed", 10]
    kinds, text, status = out["r_stream"]
    assert (text, status) == ("hi (stream)", "completed")
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                     "response.content_part.done", "response.output_item.done", "response.completed"]
    assert out["r_tool"] == ["function_call", "bash", {"cmd": "ls /"}, "call_7"]
    assert out["r_tool_back"][0] == "saw bin etc" and out["r_tool_back"][1].startswith("resp_")
    kinds, item_type, args = out["r_tool_stream"]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert (item_type, args) == ("function_call", {"cmd": "ls /"})
    assert out["r_native"] == ["native response", "completed"]
    assert out["r_bad"][0] == 400 and "previous_response_id 'resp_unknown'" in out["r_bad"][1]["message"]

    # the trainer saw every call in chat form, the native request beside it
    apis = [c.native["api"] for c in seen]
    assert apis == ["messages"] * 7 + ["responses"] * 6
    assert seen[0].request["messages"] == [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "say hi"}]
    assert seen[0].native["request"]["system"] == "be brief" and seen[0].request["max_tokens"] == 64
    back = seen[4].request["messages"]  # the tool result turn
    assert [m["role"] for m in back] == ["user", "assistant", "tool"] and back[2]["tool_call_id"] == "call_7"
    stateful = seen[10].request["messages"]  # previous_response_id: the conversation it continues
    assert [m["role"] for m in stateful] == ["user", "assistant", "tool"] and stateful[0]["content"] == "tool"
    assert seen[10].native["request"]["previous_response_id"].startswith("resp_")
    # records: chat form, and the native request and response; the bad calls failed with their reason
    assert len(records) == 18
    bad = [r for r in records if r.status != "success"]
    assert [(r.http_status, r.native["api"]) for r in bad] == [(400, "messages")] * 4 + [(400, "responses")]
    ok = records[0]
    assert ok.native["api"] == "messages" and ok.native["response"]["content"][0]["text"] == "hi (say hi)"
    assert ok.response["choices"][0]["message"]["content"] == "hi (say hi)" and ok.usage["total_tokens"] == 10


PROXY_CLIENT = r'''
import json, anthropic, openai
out = {}
a = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key="sk-in-sandbox", max_retries=0)
TOOLS = [{"name": "bash", "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
m = a.messages.create(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "a"}])
out["m_json"] = [m.content[0].text, m.stop_reason]
with a.messages.stream(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "b"}], tools=TOOLS) as s:
    f = s.get_final_message()
out["m_stream"] = [f.content[0].text, f.content[1].input, f.stop_reason, f.usage.output_tokens]
o = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk-in-sandbox", max_retries=0)
r = o.responses.create(model="gpt-x", input="c")
out["r_json"] = [r.output_text, r.id]
with o.responses.stream(model="gpt-x", input="d", previous_response_id=r.id) as s:
    f = s.get_final_response()
out["r_stream"] = [f.output_text, f.id]
print("RESULT" + json.dumps(out))
'''


async def test_proxy_forwards_natively_and_replay_serves_both_apis(admin, clients):
    """Proxy mode sends each API's body unchanged to the upstream's own path (the key as Anthropic
    reads it), passes its streams through and records them folded; the exported trajectory (chat
    form) replays into the same Messages and Responses calls."""
    from rock.actions.records import read_rock_jsonl
    from tests.agentic.native_upstream import NativeUpstream

    upstream = NativeUpstream()
    sandbox = Sandbox(SandboxConfig(base_url=admin.url, image=clients, network=False, memory="1g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    run = "PYTHONPATH=/opt/rock/site python3 /tmp/client.py"
    try:
        await sandbox.write_bytes("/tmp/client.py", PROXY_CLIENT.encode())
        await trainer.start(sandbox.sandbox_id, type="proxy", proxy_base_url=upstream.url, proxy_api_key="sk-admin")
        obs = await sandbox.arun(run, timeout=120)
        assert obs.exit_code == 0, obs.output
        out = json.loads(obs.output.split("RESULT", 1)[1])
        assert out == {"m_json": ["answer 1", "end_turn"], "m_stream": ["answer 2", {"cmd": "ls"}, "tool_use", 6],
                       "r_json": ["answer 3", "resp_up3"], "r_stream": ["answer 4", "resp_up4"]}
        assert [p for p, _, _ in upstream.requests] == ["/v1/messages"] * 2 + ["/v1/responses"] * 2
        _, headers, body = upstream.requests[0]
        assert headers["x-api-key"] == "sk-admin" and headers["anthropic-version"] and "sk-in-sandbox" not in str(headers)
        assert body["messages"] == [{"role": "user", "content": "a"}] and body["max_tokens"] == 64  # unchanged
        assert upstream.requests[3][2]["previous_response_id"] == "resp_up3"
        records = await trainer.trajectory(sandbox.sandbox_id)
        assert [(r.status, r.native["api"], r.answered_via) for r in records] == [
            ("success", "messages", "upstream")] * 2 + [("success", "responses", "upstream")] * 2
        folded = records[1]
        assert folded.stream and folded.native["response"]["content"][1]["input"] == {"cmd": "ls"}
        assert folded.response["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "bash"
        assert folded.response["choices"][0]["message"]["content"] == "answer 2"
        assert records[3].native["response"]["id"] == "resp_up4"
        assert [m["content"] for m in records[3].request["messages"]] == ["c", "answer 3", "d"]

        replay = read_rock_jsonl(await trainer.trajectory_jsonl(sandbox.sandbox_id))
        await trainer.stop(sandbox.sandbox_id)
        sent = len(upstream.requests)
        await trainer.start(sandbox.sandbox_id, type="proxy", replay=replay)
        obs = await sandbox.arun(run, timeout=120)
        assert obs.exit_code == 0, obs.output
        again = json.loads(obs.output.split("RESULT", 1)[1])
        assert again["m_json"] == out["m_json"] and again["m_stream"] == out["m_stream"]
        assert again["r_json"][0] == "answer 3" and again["r_stream"][0] == "answer 4"
        assert len(upstream.requests) == sent  # nothing reached the upstream
    finally:
        await trainer.aclose()
        await sandbox.delete()
        upstream.close()
