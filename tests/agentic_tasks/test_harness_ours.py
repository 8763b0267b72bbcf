"""Harness ``ours`` in rollouts, per backend: our coding agent in the task's sandbox, its model
calls answered over the Chat protocol. From the CLI the oracle policy gives 1.0 and null 0.0 with
every model call in the record (two tasks of each built-in suite; every task is the benchmark's);
a harness killed by a signal is the rollout's error, a policy that breaks gives 0 and ends; an ``openai`` policy URL that
does not answer is that rollout's clear error while a rollout against a scripted OpenAI server on
loopback goes on to 1.0; a recorded run replays."""

import asyncio
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rock.agentic.tasks.harness_ours import message
from rock.agentic.tasks.oracle import oracle_tool_call
from rock.agentic.tasks.rollout import RolloutOptions, rollout
from rock.agentic.tasks.suites import open_suite


def run(coro):
    return asyncio.run(coro)


def sample(n: int = 2, suite: str = "pypi-bugs") -> list[str]:
    ids = open_suite(suite).ids()
    return [ids[0], ids[-1]][:n]


@pytest.mark.parametrize("suite", ["pypi-bugs", "humaneval-repo"])
def test_cli_oracle_one_null_zero_with_the_model_calls(admin, suites, tmp_path, suite):
    tasks = sample(2, suite)
    for policy, reward in (("oracle", 1.0), ("null", 0.0)):
        out = tmp_path / f"{policy}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "job", "run", "--url", admin.url,
                               "--suite", suite, "--harness", "ours", "--policy", policy,
                               "--tasks", ",".join(tasks), "--concurrency", "2", "--out", str(out), "--jsonl"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        recs = {r["task_id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert {t: (recs[t]["reward"], recs[t]["error"]) for t in tasks} == {t: (reward, None) for t in tasks}
        for r in recs.values():
            calls = r["model_calls"]
            assert r["harness"]["name"] == "ours" and r["harness"]["exit_code"] == 0, r["harness"]
            assert [c["status"] for c in calls] == ["success"] * (2 if policy == "oracle" else 1)
            first = calls[0]["request"]
            assert first["messages"][1]["content"].startswith(  # the task's instruction.md
                "The repository in /workspace is" if suite == "pypi-bugs" else "Implement the function")
            assert [t["function"]["name"] for t in first["tools"]] == ["bash", "edit_file"]
            if policy == "oracle":
                assert calls[0]["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "bash"
                assert calls[1]["request"]["messages"][-1]["role"] == "tool"  # the fix's output went back
                assert r["diff"] and r["tests"]["fail_to_pass"]["passed"] == r["tests"]["fail_to_pass"]["of"]
            else:  # the bug's failing tests fail; a pypi-bugs repository's other tests pass
                assert r["diff"] == "" and r["pass_rate"] < 1.0
                assert r["pass_rate"] > 0.0 or suite == "humaneval-repo"
        assert json.loads(proc.stdout)["mean_reward"] == reward


def test_a_harness_crash_or_a_broken_policy_gives_zero_and_ends(admin, suites):
    task = open_suite("pypi-bugs").get(sample(1)[0])

    def crash(call):
        # the agent's own bash tool kills the agent (its parent): a harness that dies mid-run
        if any(m["role"] == "tool" for m in call.request["messages"]):
            return message("still here?")
        return message(None, [{"id": "c1", "type": "function",
                               "function": {"name": "bash", "arguments": json.dumps({"command": "kill -9 $PPID"})}}])

    def broken(call):
        raise RuntimeError("the policy fell over")

    async def both():
        return await asyncio.wait_for(asyncio.gather(
            rollout(task, RolloutOptions(base_url=admin.url, harness="ours", policy=crash), suite="pypi-bugs"),
            rollout(task, RolloutOptions(base_url=admin.url, harness="ours", policy=broken), suite="pypi-bugs")), 600)

    crashed, failed = run(both())
    # killed by a signal: the rollout's error with the reason, not graded as the agent's answer
    assert crashed.harness.exit_code == 137, crashed.harness
    assert crashed.error.startswith("the agent was killed by SIGKILL (exit 137): most often the out-of-memory "
                                       "killer"), crashed.error
    assert crashed.harness.error == crashed.error
    assert crashed.reward == 0.0 and crashed.tests is None
    assert len(crashed.model_calls) == 1  # it died before its second call
    assert "the policy failed: RuntimeError: the policy fell over" in failed.harness.error
    assert failed.harness.exit_code == 3  # the agent's waiting call failed: a model error
    assert failed.reward == 0.0 and failed.tests is not None


class ScriptedOpenAI:
    """An OpenAI-compatible server on loopback that knows the task's fix: its bash tool call, then done."""

    def __init__(self, task):
        self.auth: list[str | None] = []
        calls = self.auth
        fix = oracle_tool_call(task)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                calls.append(self.headers.get("authorization"))
                done = any(m["role"] == "tool" for m in body["messages"])
                out = message("done") if done else message(None, [fix])
                out.update(id=f"up-{len(calls)}", object="chat.completion", created=1, model=body["model"])
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_policy_unreachable_is_a_clear_error_others_go_on(admin, suites, tmp_path):
    task = open_suite("pypi-bugs").get(sample(1)[0])
    upstream = ScriptedOpenAI(task)
    dead = f"http://127.0.0.1:{closed_port()}/v1"

    def options(url):
        return RolloutOptions(base_url=admin.url, harness="ours", policy="openai",
                              policy_options={"base_url": url, "model": "my-model", "api_key": "sk-test",
                                              "retry_attempts": 1})

    async def both():
        return await asyncio.gather(rollout(task, options(dead), suite="pypi-bugs"),
                                    rollout(task, options(upstream.url), suite="pypi-bugs"))

    try:
        down, up = run(both())
    finally:
        upstream.close()
    assert down.error.startswith(f"policy openai ({dead}): model call 1 failed with HTTP 502"), down.error
    assert "did not answer" in down.error and down.reward == 0.0
    assert up.error is None and up.reward == 1.0, (up.error, up.harness)
    assert upstream.auth == ["Bearer sk-test"] * 2  # the key went from the admin, not from the sandbox
    assert [c["request"]["model"] for c in up.model_calls] == ["my-model"] * 2

    # the job's record of the successful run replays to the same reward without the upstream
    replay = tmp_path / "job.jsonl"
    replay.write_text(down.line() + "\n" + up.line() + "\n")
    again = run(rollout(task, RolloutOptions(base_url=admin.url, harness="ours", policy="replay",
                                             policy_options={"replay": str(replay)}), suite="pypi-bugs"))
    assert again.error is None and again.reward == 1.0 and len(again.model_calls) == 2
    assert [c["mode"] for c in again.model_calls] == ["replay"] * 2
    other = open_suite("pypi-bugs").get(sample(2)[1])
    rec = run(rollout(other, RolloutOptions(base_url=admin.url, harness="ours", policy="replay",
                                            policy_options={"replay": str(replay)}), suite="pypi-bugs"))
    assert rec.error == f"--replay {replay} has no record of task {other.task_id!r}"
