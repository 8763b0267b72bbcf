"""Proxy mode to a scripted upstream on the host's loopback (retries, streams passed through, token
ids and logprobs in the records) and replay of the exported trajectory, once per backend."""

from __future__ import annotations

import json

import pytest

from rock.actions.records import read_rock_jsonl
from rock.errors import BadRequest
from tests.agentic.conftest import sandbox_with_trainer
from tests.agentic.upstream import Upstream

CLIENT = r'''
import json
from openai import OpenAI, NotFoundError
client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk", max_retries=0)
out = []
r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}], temperature=0.7,
                                   logprobs=True, extra_body={"return_token_ids": True})
out.append(r.choices[0].message.content)
text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
    model="m", messages=[{"role": "user", "content": "b"}], stream=True) if c.choices)
out.append(text)
try:
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "c"}])
    out.append("third answered")
except NotFoundError as exc:
    out.append("404")
print("RESULT" + json.dumps(out))
'''


@pytest.fixture
async def box(admin):
    upstream = Upstream(fail_first=1)
    try:
        async with sandbox_with_trainer(admin, {"/tmp/client.py": CLIENT}) as (sandbox, trainer):
            yield sandbox, trainer, upstream
    finally:
        upstream.close()


async def run_client(sandbox) -> list:
    obs = await sandbox.arun('"$ROCK_HOST_PYTHON" /tmp/client.py', timeout=120)
    assert obs.exit_code == 0, obs.output
    return json.loads(obs.output.split("RESULT", 1)[1])


async def test_proxy_mode_records_token_ids_and_replay_serves_the_same_calls(box):
    sandbox, trainer, upstream = box
    info = await trainer.start(sandbox.sandbox_id, type="proxy", proxy_base_url=upstream.url, retry_delay=0.01)
    assert info.mode == "proxy"
    out = await run_client(sandbox)
    # first call: a 503, retried; then three answers (the third call is answered too in proxy mode)
    assert out == ["answer 2", "answer 3", "third answered"]
    assert upstream.requests[1]["temperature"] == 0.7 and upstream.requests[1]["return_token_ids"] is True
    assert upstream.requests[1]["logprobs"] is True  # sampling and token options reach the engine unchanged
    records = await trainer.trajectory(sandbox.sandbox_id)
    assert [(r.index, r.status, r.attempts, r.mode) for r in records] == [
        (1, "success", 2, "proxy"), (2, "success", 1, "proxy"), (3, "success", 1, "proxy")]
    assert records[0].token_ids == [[10, 11]] and records[0].prompt_token_ids == [1, 2, 3]
    assert records[0].logprobs[0]["content"][0]["logprob"] == -0.5
    streamed = records[1]  # folded from the passed-through stream
    assert streamed.stream and streamed.response["choices"][0]["message"]["content"] == "answer 3"
    assert streamed.token_ids == [[10, 11]] and streamed.response["choices"][0]["finish_reason"] == "stop"
    assert streamed.logprobs[0]["content"][0]["token"] == "answer"

    # replay: the exported ROCK JSONL, served in order, 404 past its end
    exported = await trainer.trajectory_jsonl(sandbox.sandbox_id)
    replay = read_rock_jsonl(exported)[:2]
    await trainer.stop(sandbox.sandbox_id)
    info = await trainer.start(sandbox.sandbox_id, type="proxy", replay=replay)
    assert info.mode == "replay"
    sent = len(upstream.requests)
    assert await run_client(sandbox) == ["answer 2", "answer 3", "404"]
    assert len(upstream.requests) == sent  # nothing reached the upstream
    records = await trainer.trajectory(sandbox.sandbox_id)
    assert [(r.status, r.http_status) for r in records] == [("success", 200), ("success", 200), ("failure", 404)]
    assert "exhausted" in records[2].error


async def test_a_stream_sent_whole_with_a_length_passes_through(admin):
    """A server that buffers its event stream and sends it with a content-length (a proxy in front of the
    engine may): the stream still reaches the client and the record."""
    upstream = Upstream(sized_streams=True)
    try:
        async with sandbox_with_trainer(admin, {"/tmp/client.py": CLIENT}) as (sandbox, trainer):
            await trainer.start(sandbox.sandbox_id, type="proxy", proxy_base_url=upstream.url)
            assert await run_client(sandbox) == ["answer 1", "answer 2", "third answered"]
            streamed = (await trainer.trajectory(sandbox.sandbox_id))[1]
            assert streamed.stream and streamed.status == "success" and streamed.token_ids == [[10, 11]]
            assert streamed.response["choices"][0]["message"]["content"] == "answer 2"
    finally:
        upstream.close()


RAW_CLIENT = r'''
import json, urllib.request
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "a"}]}).encode()
req = urllib.request.Request("http://127.0.0.1:8080/v1/chat/completions", body, {"content-type": "application/json"})
with urllib.request.urlopen(req) as r:
    print("RESULT" + json.dumps([r.status, r.headers.get("content-type"), r.read().decode()]))
'''


async def test_a_stream_answering_a_call_that_did_not_ask_for_one_passes_through(admin):
    """An upstream that streams whatever it is asked (chunked, then sent whole with a length): the
    call's client gets the event stream, and the record the folded completion."""
    for sized in (False, True):
        upstream = Upstream(always_stream=True, sized_streams=sized)
        try:
            async with sandbox_with_trainer(admin, {"/tmp/raw.py": RAW_CLIENT}) as (sandbox, trainer):
                await trainer.start(sandbox.sandbox_id, type="proxy", proxy_base_url=upstream.url)
                obs = await sandbox.arun('"$ROCK_HOST_PYTHON" /tmp/raw.py', timeout=120)
                assert obs.exit_code == 0, obs.output
                status, ctype, text = json.loads(obs.output.split("RESULT", 1)[1])
                assert status == 200 and ctype.startswith("text/event-stream") and "data: [DONE]" in text, text
                record = (await trainer.trajectory(sandbox.sandbox_id))[0]
                assert record.status == "success" and record.response["choices"][0]["message"]["content"] == "answer 1"
                assert record.token_ids == [[10, 11]]
        finally:
            upstream.close()


async def test_bad_endpoint_configs_are_refused(box):
    sandbox, trainer, _ = box
    for config, words in (({"type": "proxy"}, "proxy_base_url"),
                          ({"type": "proxy", "proxy_base_url": "file:///etc/passwd"}, "http"),
                          ({"type": "proxy", "proxy_base_url": "http://u:p@127.0.0.1/v1"}, "credentials"),
                          ({"type": "proxy", "replay": [{"request": {}}]}, "response"),
                          ({"port": 70000}, "65535"),
                          ({"nonsense": 1}, "nonsense")):
        with pytest.raises(BadRequest) as err:
            await trainer.start(sandbox.sandbox_id, **config)
        assert words in str(err.value), (config, str(err.value))
