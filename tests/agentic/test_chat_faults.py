"""Limits and faults of the model endpoint (item 7), once per backend: nothing waits forever on
either side, and bad input gets a 4xx that says why."""

from __future__ import annotations

import asyncio
import json

import pytest

from rock.errors import BadRequest, CommandTimeout, Conflict, SandboxNotFound
from tests.agentic.conftest import sandbox_with_trainer

# POST each body given on the command line (or raw bytes after '@'); print status and error message.
CLIENT = r'''
import json, sys, urllib.request, urllib.error
for arg in sys.argv[1:]:
    method, _, rest = arg.partition(" ")
    path, _, body = rest.partition(" ")
    data = body[1:].encode() * 5000 if body.startswith("@") else body.encode() if body else None
    req = urllib.request.Request("http://127.0.0.1:8080" + path, data, {"content-type": "application/json"},
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            print(json.dumps([r.status, json.load(r)]))
    except urllib.error.HTTPError as e:
        print(json.dumps([e.code, json.loads(e.read() or b"null")]))
'''
CALL = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
OK = {"choices": [{"message": {"role": "assistant", "content": "fine"}}]}


@pytest.fixture
async def box(admin):
    async with sandbox_with_trainer(admin, {"/tmp/c.py": CLIENT}) as pair:
        yield pair


def client(sandbox, *requests: str):
    args = " ".join(f"'{r}'" for r in requests)
    return asyncio.ensure_future(sandbox.arun(f'"$ROCK_HOST_PYTHON" /tmp/c.py {args}', timeout=120))


def lines(obs) -> list:
    assert obs.exit_code == 0, obs.output
    return [json.loads(x) for x in obs.output.splitlines() if x.startswith("[")]


async def test_a_trainer_that_never_answers_leaves_a_clear_504(box):
    sandbox, trainer = box
    await trainer.start(sandbox.sandbox_id, call_timeout=1)
    run = client(sandbox, f"POST /v1/chat/completions {CALL}", f"POST /v1/chat/completions {CALL}")
    taken = await trainer.exchange(wait=30, sandbox_ids=[sandbox.sandbox_id])  # the trainer takes call 1 ... and vanishes
    assert [c.index for c in taken.calls] == [1]
    out = lines(await run)
    assert [x[0] for x in out] == [504, 504]
    assert "no answer from the trainer within 1s" in out[0][1]["error"]["message"]
    records = await trainer.trajectory(sandbox.sandbox_id)
    assert [(r.status, r.http_status) for r in records] == [("timeout", 504), ("timeout", 504)]
    # a late answer is refused, with the reason
    with pytest.raises(Conflict, match="call 1 ended"):
        await trainer.answer(sandbox.sandbox_id, 1, OK)
    late = await trainer.exchange([{"sandbox_id": sandbox.sandbox_id, "index": 2, "response": OK}], wait=0,
                                  sandbox_ids=[sandbox.sandbox_id])
    assert late.rejected[0].status == 409 and "ended" in late.rejected[0].reason


async def test_bad_answers_and_bad_requests_get_4xx_that_say_why(box):
    sandbox, trainer = box
    await trainer.start(sandbox.sandbox_id, limits={"max_calls": 2, "max_body_bytes": 4096})
    run = client(sandbox, f"POST /v1/chat/completions {CALL}", "POST /v1/chat/completions not json",
                 "POST /v1/chat/completions @xxxxxxxxxx", "GET /v1/nothing", f"POST /v1/chat/completions {CALL}",
                 f"POST /v1/chat/completions {CALL}")
    first = await trainer.exchange(wait=30, sandbox_ids=[sandbox.sandbox_id])
    sid = sandbox.sandbox_id
    for bad, words in (({"choices": []}, "non-empty"), ({"choices": [{"message": "x"}]}, "message"),
                       ({"choices": [{"message": {"content": 3}}]}, "content"),
                       ({"choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": {}}}]}}]},
                        "JSON string")):
        with pytest.raises(BadRequest, match=words):
            await trainer.answer(sid, 1, bad)
    with pytest.raises(SandboxNotFound, match="made no call 7"):
        await trainer.answer(sid, 7, OK)
    with pytest.raises(BadRequest, match="exactly one"):
        await trainer.answer(sid, 1)
    await trainer.answer(sid, first.calls[0].index, OK)  # still answerable after the refusals
    with pytest.raises(Conflict, match="answered already"):
        await trainer.answer(sid, 1, OK)
    second = await trainer.exchange(wait=30, sandbox_ids=[sandbox.sandbox_id])
    await trainer.answer(sid, second.calls[0].index, OK)
    out = lines(await run)
    assert out[0] == [200, {**out[0][1], "choices": out[0][1]["choices"]}] and out[0][1]["choices"][0]["message"]["content"] == "fine"
    assert out[1][0] == 400 and "not JSON" in out[1][1]["error"]["message"]
    assert out[2][0] == 413 and "4096" in out[2][1]["error"]["message"]
    assert out[3][0] == 404 and "/v1/chat/completions" in out[3][1]["error"]["message"]
    assert out[4][0] == 200
    assert out[5][0] == 429 and "limit of 2 model calls" in out[5][1]["error"]["message"]


async def test_session_end_reaches_a_waiting_trainer_and_nothing_waits_forever(box):
    sandbox, trainer = box
    await trainer.start(sandbox.sandbox_id)
    proc = await sandbox.start_process("sleep 300")
    await trainer.watch(sandbox.sandbox_id, proc["pid"])
    with pytest.raises(CommandTimeout, match="made no call 1 within 0.5s"):
        await trainer.anti_call_llm(sandbox.sandbox_id, 0, call_timeout=0.5)
    waiting = asyncio.ensure_future(trainer.anti_call_llm(sandbox.sandbox_id, 0))
    polled = asyncio.ensure_future(trainer.exchange(wait=60, sandbox_ids=[sandbox.sandbox_id]))
    await sandbox.kill_process(proc["proc_id"], 9)  # the agent crashes
    assert await asyncio.wait_for(waiting, 30) == "SESSION_END"
    assert (await asyncio.wait_for(polled, 30)).ended == [sandbox.sandbox_id]
    # a stopped endpoint is gone at once: the sandbox's clients are refused, not left waiting
    await trainer.stop(sandbox.sandbox_id)
    r = await client(sandbox, "GET /health")
    assert r.exit_code != 0 and "Connection refused" in r.output


# Requests written back to back on one connection before any answer is read (HTTP pipelining);
# prints each response's status line, connection header and content, in the order they came.
PIPELINE = r'''
import json, socket, sys
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
stream = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
def post(data, close=False):
    extra = b"connection: close\r\n" if close else b""
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n%s"
            b"content-length: %d\r\n\r\n%s" % (extra, len(data), data))
s = socket.create_connection(("127.0.0.1", 8080))
s.sendall(post(body) + post(stream) + post(body, close=sys.argv[1] == "close") + post(body))
f = s.makefile("rb")
for _ in range(4):
    status = f.readline()
    if not status:
        print("CLOSED"); break
    head = {}
    while (line := f.readline()) != b"\r\n":
        k, _, v = line.decode().partition(":"); head[k.strip().lower()] = v.strip()
    if head.get("transfer-encoding") == "chunked":
        data = b""
        while (n := int(f.readline(), 16)):
            data += f.read(n); f.readline()
        f.readline()
        text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                       for e in data.decode().split("\n\n") if e.startswith("data: {") and json.loads(e[6:])["choices"])
    else:
        text = json.loads(f.read(int(head["content-length"])))["choices"][0]["message"]["content"]
    print(json.dumps([status.split()[1].decode(), head.get("connection"), text]))
'''


@pytest.mark.parametrize("mode", ["keep", "close"])
async def test_pipelined_requests_are_answered_in_order_on_their_connection(box, mode):
    """A connection's requests reach the trainer one at a time, each once the one before it is
    answered, and their answers come back in order, streaming or not; a request's ``connection:
    close`` ends the connection after its answer (the request behind it is never made)."""
    sandbox, trainer = box
    await sandbox.write_bytes("/tmp/p.py", PIPELINE.encode())
    await trainer.start(sandbox.sandbox_id)
    run = asyncio.ensure_future(sandbox.arun(f'"$ROCK_HOST_PYTHON" /tmp/p.py {mode}', timeout=120))
    sid, answered = sandbox.sandbox_id, []
    while len(answered) < (3 if mode == "close" else 4):
        got = await trainer.exchange(wait=30, sandbox_ids=[sid])
        assert len(got.calls) == 1, got.calls
        for call in got.calls:
            answered.append(call.index)
            reply = {"choices": [{"message": {"role": "assistant", "content": f"answer {call.index}"}}]}
            await trainer.answer(sid, call.index, reply)
    obs = await run
    out = lines(obs)
    if mode == "keep":
        assert out == [["200", None, "answer 1"], ["200", None, "answer 2"], ["200", None, "answer 3"],
                       ["200", None, "answer 4"]]
    else:
        assert out == [["200", None, "answer 1"], ["200", None, "answer 2"], ["200", "close", "answer 3"]]
        assert (await trainer.status(sid)).calls == 3 and "CLOSED" in obs.output


async def test_the_wall_time_limit_ends_the_session_on_both_sides(box):
    sandbox, trainer = box
    sid = sandbox.sandbox_id
    await trainer.start(sid, limits={"max_seconds": 2})
    run = client(sandbox, f"POST /v1/chat/completions {CALL}", f"POST /v1/chat/completions {CALL}")
    taken = await trainer.exchange(wait=30, sandbox_ids=[sid])  # held, never answered, when the time is up
    assert [c.index for c in taken.calls] == [1]
    assert (await trainer.exchange(wait=30, sandbox_ids=[sid])).ended == [sid]  # the trainer's side: ended
    out = lines(await run)  # the agent's side: its held call and its next one, 429 with the reason
    assert [x[0] for x in out] == [429, 429]
    assert all("wall-time limit of 2s is reached" in x[1]["error"]["message"] for x in out)
    with pytest.raises(Conflict, match="wall-time limit"):
        await trainer.answer(sid, 1, OK)
    records = await trainer.trajectory(sid)
    assert [(r.status, r.http_status) for r in records] == [("timeout", 429), ("failure", 429)]
    assert (await trainer.status(sid)).ended


async def test_proxy_mode_retries_dropped_connections_and_429_then_says_when_it_gives_up(box):
    from tests.admin.harness import free_port
    from tests.agentic.upstream import Upstream

    sandbox, trainer = box
    sid = sandbox.sandbox_id
    upstream = Upstream(drop_first=2, fail_first=1, fail_status=429)
    try:
        await trainer.start(sid, type="proxy", proxy_base_url=upstream.url, retry_delay=0.01, retry_attempts=4)
        out = lines(await client(sandbox, f"POST /v1/chat/completions {CALL}"))
        assert out[0][0] == 200 and out[0][1]["choices"][0]["message"]["content"] == "answer 4"
        assert len(upstream.requests) == 4  # two dropped connections, one 429, then the answer
        assert [(r.status, r.attempts) for r in await trainer.trajectory(sid)] == [("success", 4)]
    finally:
        upstream.close()
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: every try is refused
    await trainer.stop(sid)
    await trainer.start(sid, type="proxy", proxy_base_url=dead, retry_delay=0.01, retry_attempts=3)
    out = lines(await client(sandbox, f"POST /v1/chat/completions {CALL}"))
    assert out[0][0] == 502
    assert f"the upstream {dead} did not answer after 3 tries: ConnectError" in out[0][1]["error"]["message"]
    records = await trainer.trajectory(sid)
    assert [(r.status, r.http_status, r.attempts) for r in records] == [("failure", 502, 3)]
