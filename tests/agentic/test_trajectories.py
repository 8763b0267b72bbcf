"""Training-ready trajectories from a real rollout: a harness-like loop of Anthropic Messages calls
(the ``anthropic`` client inside a sandbox without a network) answered by the trainer with token
ids and logprobs (a byte-level "tokenizer" over a chat template, so a call's prompt extends the
last one's exactly as an engine's would), a compaction of the history, and an answer without
token ids; exported with ``rock.agentic.trajectories`` and ``rock job export``."""

from __future__ import annotations

import importlib.util
import json

from rock.agentic import terminal_agents, trajectories
from rock.cli.main import main
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from tests.agentic.conftest import run_answered
from tests.agentic.test_chat_native import clients  # noqa: F401 - the vendor clients' image
from tests.agentic.test_terminal_agents import opencode_image, run_agent, shell_once  # noqa: F401 - opencode's image

CLIENT = r'''
import anthropic
a = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key="sk", max_retries=0)
TOOLS = [{"name": "bash", "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
hist = [{"role": "user", "content": "fix the bug"}]
for step in range(5):
    m = a.messages.create(model="p", max_tokens=64, system="you fix bugs", messages=hist, tools=TOOLS)
    hist.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]})
    uses = [b for b in m.content if b.type == "tool_use"]
    if not uses:
        break
    hist.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                              "content": "ran %d" % step}]})
# the harness compacts: its history becomes a summary
a.messages.create(model="p", max_tokens=64, system="you fix bugs", tools=TOOLS,
                  messages=[{"role": "user", "content": "summary: ran 0 and 1, then fixed. check it"}])
a.messages.create(model="p", max_tokens=64, messages=[{"role": "user", "content": "untokenized"}])
print("CLIENT DONE")
'''


def piece(m: dict) -> str:
    """One message under a toy chat template."""
    body = m.get("content") or ""
    if isinstance(body, list):
        body = "".join(p.get("text", "") for p in body)
    for tc in m.get("tool_calls") or ():
        body += "<call>" + tc["function"]["name"] + json.dumps(json.loads(tc["function"]["arguments"]), sort_keys=True)
    return f"<|{m['role']}|>{body}<|end|>"


def prompt_ids(messages: list[dict]) -> list[int]:
    return list(("".join(piece(m) for m in messages) + "<|assistant|>").encode())


def policy(call):
    messages = call.request["messages"]
    last = messages[-1]["content"]
    tools_done = sum(1 for m in messages if m["role"] == "tool")
    if last == "untokenized":
        return {"choices": [{"message": {"role": "assistant", "content": "no tokens"}}]}
    if tools_done < 2 and not last.startswith("summary"):
        reply = {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{tools_done}", "type": "function",
                 "function": {"name": "bash", "arguments": json.dumps({"cmd": f"step {tools_done}"})}}]}
    else:
        reply = {"role": "assistant", "content": "fixed" if tools_done else "checked"}
    completion = list(piece(reply)[len("<|assistant|>"):].encode())
    return {"prompt_token_ids": prompt_ids(messages),
            "choices": [{"message": reply, "token_ids": completion,
                         "logprobs": {"content": [{"token": "x", "logprob": -0.25} for _ in completion]}}]}


async def test_a_multi_call_rollout_exports_merged_sequences_with_loss_masks(admin, clients, tmp_path, capsys):  # noqa: F811
    sandbox = Sandbox(SandboxConfig(base_url=admin.url, image=clients, network=False, memory="1g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        await trainer.start(sandbox.sandbox_id)
        await sandbox.write_bytes("/tmp/client.py", CLIENT.encode())
        obs, seen = await run_answered(sandbox, trainer, "PYTHONPATH=/opt/rock/site python3 /tmp/client.py", policy)
        assert obs.exit_code == 0 and "CLIENT DONE" in obs.output, obs.output
        records = await trainer.trajectory(sandbox.sandbox_id)
    finally:
        await trainer.aclose()
        await sandbox.delete()
    assert len(records) == 5 and all(r.status == "success" and r.native["api"] == "messages" for r in records)
    assert [c.native["api"] for c in seen] == ["messages"] * 5  # the exchange loop carries the native request
    assert seen[1].native["request"]["messages"][2]["content"][0]["type"] == "tool_result"

    episode = trajectories.export(records, reward=1.0, episode="ep-1")
    calls = episode["calls"]
    assert [c["tokens"] is not None for c in calls] == [True, True, True, True, False]
    assert "carried no token ids" in calls[4]["reason"] and "answered_via=trainer" in calls[4]["reason"]
    tok = [c["tokens"] for c in calls[:4]]
    for t, r in zip(tok, records):  # per call: exactly what the answer carried
        assert t["prompt_token_ids"] == r.prompt_token_ids and t["completion_token_ids"] == r.token_ids[0]
        assert t["logprobs"] == [-0.25] * len(t["completion_token_ids"])

    first, second = episode["sequences"]
    # calls 1-3 extend one prefix: one sequence, the concatenation of the calls' tokens
    assert first["calls"] == [1, 2, 3] and first["start"] == {"reason": "first", "detail": None}
    expected, mask = [], []
    for t in tok[:3]:
        added = t["prompt_token_ids"][len(expected):]
        assert t["prompt_token_ids"][:len(expected)] == expected  # each prompt extends the sequence so far
        expected += added + t["completion_token_ids"]
        mask += [0] * len(added) + [1] * len(t["completion_token_ids"])
    assert first["token_ids"] == expected == tok[2]["prompt_token_ids"] + tok[2]["completion_token_ids"]
    assert first["loss_mask"] == mask
    # the mask covers exactly the policy's tokens: the masked positions are the three completions, in order
    policy_tokens = [x for x, m in zip(first["token_ids"], first["loss_mask"]) if m]
    assert policy_tokens == sum((t["completion_token_ids"] for t in tok[:3]), [])
    assert bytes(x for x, m in zip(first["token_ids"], first["loss_mask"]) if not m).decode().count("<|tool|>ran") == 2
    assert [lp for lp, m in zip(first["logprobs"], first["loss_mask"]) if m] == [-0.25] * sum(mask)
    assert all(lp is None for lp, m in zip(first["logprobs"], first["loss_mask"]) if not m)
    # the compaction starts a new sequence and says why
    assert second["calls"] == [4] and second["start"]["reason"] == "compaction"
    assert "diverges from the sequence" in second["start"]["detail"]
    assert second["token_ids"] == tok[3]["prompt_token_ids"] + tok[3]["completion_token_ids"]
    assert sum(second["loss_mask"]) == len(tok[3]["completion_token_ids"])

    # the job's records through `rock job export`
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"task_id": "t-1", "harness": {"name": "x"}, "reward": 1.0, "error": None,
                               "model_calls": [r.model_dump(mode="json") for r in records]}) + "\n"
                   + json.dumps({"task_id": "t-2", "harness": {"name": "x"}, "reward": 0.0, "error": None,
                                 "model_calls": [records[4].model_dump(mode="json")]}) + "\n")
    capsys.readouterr()
    assert main(["--json", "job", "export", str(job), "--format", "jsonl"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"episodes": 2, "rows": 3, "out": str(tmp_path / "job.tokens.jsonl"), "calls_without_tokens": 2}
    rows = [json.loads(x) for x in (tmp_path / "job.tokens.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["sequence"], r["start_reason"], r["reward"]) for r in rows] == [
        ("t-1", 0, "first", 1.0), ("t-1", 1, "compaction", 1.0), ("t-2", None, None, 0.0)]
    assert rows[0]["token_ids"] == first["token_ids"] and rows[0]["loss_mask"] == first["loss_mask"]
    assert rows[2]["token_ids"] is None and "carried no token ids" in rows[2]["reason"]

    # parquet: the same rows where pyarrow is installed; otherwise the command says so
    code = main(["--json", "job", "export", str(job), "--format", "parquet", "--out", str(tmp_path / "t.parquet")])
    captured = capsys.readouterr()
    if importlib.util.find_spec("pyarrow") is None:
        assert code == 2 and "needs pyarrow" in captured.err
    else:
        import pyarrow.parquet as pq

        assert code == 0
        table = pq.read_table(tmp_path / "t.parquet").to_pylist()
        assert [r["token_ids"] for r in table] == [r["token_ids"] for r in rows]
        assert [r["loss_mask"] for r in table] == [r["loss_mask"] for r in rows]


def _rec(index, messages, reply, prompt=None, completion=None, status="success"):
    """A record as the admin keeps it (chat form), with the tokens an engine would have sent."""
    return {"index": index, "status": status, "http_status": 200 if status == "success" else 502, "error": None,
            "answered_via": "upstream", "request": {"messages": messages},
            "response": {"choices": [{"message": reply}]}, "prompt_token_ids": prompt,
            "token_ids": None if completion is None else [completion], "logprobs": None}


def test_why_a_sequence_breaks():
    """Each way a harness rewrites its history gets its own reason; a failed call in between
    breaks nothing; after a call without tokens the next one starts afresh."""
    sys_, u1, a1 = {"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}
    u2, a2, u3 = {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}, {"role": "user", "content": "u3"}
    records = [
        _rec(1, [sys_, u1], a1, [1, 2], [3]),
        _rec(2, [sys_, u1, a1, u2], a2, [1, 2, 3, 4], [5]),
        _rec(3, [sys_, u1], a1, status="failure"),  # failed: not a turn, ignored
        _rec(4, [sys_, u1, a1, u2, a2, u3], a1, [1, 2, 9, 4, 5, 6], [7]),  # same messages, other tokens
        _rec(5, [sys_, u2, a2, u3], a1, [1, 4, 5, 6], [7]),  # u1/a1 dropped, the rest as it was
        _rec(6, [sys_, {"role": "user", "content": "reminder"}, u2, a2, u3, a1], a1, [1, 8, 4, 5, 6, 7, 2], [3]),
        _rec(7, [sys_, u1], a1),  # no tokens
        _rec(8, [sys_, u1, a1, u2], a2, [1, 2, 3, 4], [5]),
    ]
    episode = trajectories.export(records)
    assert [(s["calls"], s["start"]["reason"]) for s in episode["sequences"]] == [
        ([1, 2], "first"), ([4], "retokenized"), ([5], "truncation"), ([6], "rewrite"), ([8], "after_untokenized")]
    assert episode["sequences"][0]["token_ids"] == [1, 2, 3, 4, 5] and episode["sequences"][0]["loss_mask"] == [0, 0, 1, 0, 1]
    assert "did not succeed" in episode["calls"][2]["reason"] and episode["calls"][6]["tokens"] is None


async def test_opencode_title_call_is_a_conversation_of_its_own(admin, opencode_image):  # noqa: F811
    """opencode asks for a title under its own system prompt before the task: in the export that is a
    sequence, and the task's conversation a new one (``new_conversation``), not a compaction of it;
    the task's two calls extend one prefix and merge."""
    shell = shell_once("bash", {"command": "echo hi", "description": "say hi"}, lambda out: "done")

    def tokenized(call):
        answer = shell(call)
        reply = answer["choices"][0]["message"]
        completion = list(piece(reply)[len("<|assistant|>"):].encode())
        return {"prompt_token_ids": prompt_ids(call.request["messages"]),
                "choices": [{"message": reply, "token_ids": completion,
                             "logprobs": {"content": [{"token": "x", "logprob": -0.5} for _ in completion]}}]}

    _, _, records, _ = await run_agent(admin, opencode_image, terminal_agents.opencode_command(),
                                       terminal_agents.opencode_env(max_steps=5), tokenized, {}, "/dev/null")
    systems = [r.request["messages"][0]["content"][:40] for r in records]
    assert len(records) == 3 and "title" in systems[0] and systems[1] == systems[2], systems
    episode = trajectories.export(records, reward=1.0, episode="oc")
    assert [(s["calls"], s["start"]["reason"]) for s in episode["sequences"]] == [
        ([1], "first"), ([2, 3], "new_conversation")]
    assert "another system prompt" in episode["sequences"][1]["start"]["detail"]
    rows = trajectories.rows(episode)
    assert [r["start_reason"] for r in rows] == ["first", "new_conversation"]


def test_rows_carry_each_calls_reason_and_parquet_round_trips(tmp_path):
    """Per-call reasons (logprobs dropped, a failed call, a call without tokens) are in the exported rows, each
    once; Parquet holds the same rows as JSONL, column for column."""
    import pyarrow.parquet as pq

    sys_, u1, a1 = {"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}
    u2, a2 = {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}
    first = _rec(1, [sys_, u1], a1, [1, 2], [3])
    first["logprobs"] = [[-0.1, -0.2]]  # two logprobs for one completion token: dropped, with the reason
    records = [first, _rec(2, [sys_, u1], a1, status="failure"), _rec(3, [sys_, u1, a1, u2], a2, [1, 2, 3, 4], [5]),
               _rec(4, [{"role": "system", "content": "title"}, {"role": "user", "content": "a title for:"}, u1], a1,
                    [9, 8, 2], [3]),  # a side conversation (opencode's title call has this shape)
               _rec(5, [sys_, u2], a2),
               _rec(6, [{"role": "system", "content": "s, edited"}, u1, a1, u2, a2, {"role": "user", "content": "u3"}],
                    a1, [6, 2, 3, 4, 5, 7], [8])]
    episode = trajectories.export(records, reward=0.5, episode="e", meta={"task_id": "t", "harness": "h", "error": None})
    rows = trajectories.rows(episode)
    # the system prompt edited within the conversation (its first message as it was) is a rewrite, not a new one
    assert [(r["calls"], r["start_reason"]) for r in rows] == [([1, 3], "first"), ([4], "new_conversation"),
                                                                ([6], "after_untokenized")]
    reasons = {x["call"]: x["reason"] for r in rows for x in r["call_reasons"]}
    assert sorted(reasons) == [1, 2, 5] and sum(len(r["call_reasons"]) for r in rows) == 3  # each once
    assert reasons[1] == "logprobs dropped: 2 for 1 completion tokens"
    assert "did not succeed" in reasons[2] and "carried no token ids" in reasons[5]
    assert [x["call"] for x in rows[0]["call_reasons"]] == [1, 2, 5] and rows[1]["call_reasons"] == []
    edited = trajectories.export([records[0], records[2], records[5]])["sequences"][1]
    assert edited["calls"] == [6] and edited["start"]["reason"] == "rewrite", edited["start"]

    assert trajectories.write([episode], tmp_path / "e.parquet") == 3
    assert trajectories.write([episode], tmp_path / "e.jsonl") == 3
    table = pq.read_table(tmp_path / "e.parquet").to_pylist()
    jsonl = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert table == jsonl == json.loads(json.dumps(rows))
