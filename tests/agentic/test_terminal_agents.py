"""Claude Code 2.1.328 (npm, its env image: rock.agentic.terminal_agents) in print mode inside a
sandbox without a network, its Anthropic Messages calls answered by a scripted trainer policy
through the model endpoint: it runs the policy's Bash tool call, sends the result back, and ends
with the policy's answer, once per backend."""

from __future__ import annotations

import asyncio
import json
import shlex

import pytest

from rock.agentic import terminal_agents
from rock.envs.errors import EnvError
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.config import SandboxConfig
from tests.agentic.conftest import run_answered
from tests.agentic.test_mini_swe_agent import keep_unpacked

MARK = "made-by-claude-code"


@pytest.fixture(scope="session")
def claude_image() -> str:
    try:
        image = asyncio.run(terminal_agents.ensure_image("claude-code", progress=lambda l: print("[claude image]", l)))
    except EnvError as exc:
        pytest.fail(f"the Claude Code env image could not be built ({exc.message})")
    keep_unpacked(image.tag)
    return image.tag


def policy(call):
    """Bash once (its own tool, by the name Claude Code gives it), then the answer; any side call
    (a title, a topic check) gets a short text."""
    request = call.request
    tools = [t["function"]["name"] for t in request.get("tools") or ()]
    results = [m for m in request["messages"] if m["role"] == "tool"]
    if "Bash" not in tools:
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}
    if not results:
        args = {"command": f"echo {MARK} > /tmp/claude-out.txt && cat /tmp/claude-out.txt",
                "description": "write the marker"}
        return {"choices": [{"message": {"role": "assistant", "content": "Writing the file.", "tool_calls": [
            {"id": "toolu_rock_1", "type": "function", "function": {"name": "Bash", "arguments": json.dumps(args)}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
    return {"choices": [{"message": {"role": "assistant", "content": f"Done: {results[-1]['content'].strip()}"}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 5, "total_tokens": 125}}


async def test_claude_code_runs_on_the_messages_endpoint(admin, claude_image):
    sandbox = Sandbox(SandboxConfig(base_url=admin.url, image=claude_image, network=False, memory="2g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        await trainer.start(sandbox.sandbox_id)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in terminal_agents.claude_code_env().items())
        command = (f"mkdir -p /tmp/claude-home /tmp/work && cd /tmp/work && export PROMPT='write the marker file' && "
                   f"env {env} {terminal_agents.claude_code_command()}")
        obs, seen = await run_answered(sandbox, trainer, command, policy, timeout=240)
        records = await trainer.trajectory(sandbox.sandbox_id)
        written = await sandbox.arun("cat /tmp/claude-out.txt")
    finally:
        await trainer.aclose()
        await sandbox.delete()
    summary = [(r.index, r.status, r.http_status, r.native and r.native["api"], r.stream, r.error) for r in records]
    assert obs.exit_code == 0, (obs.output[-3000:], summary)
    # stdout: the result object (--output-format json), after a notice that the model name is not one it knows
    result = [json.loads(line) for line in obs.output.splitlines() if line.startswith('{"') and '"result"' in line][-1]
    assert result["is_error"] is False and result["result"] == f"Done: {MARK}", result
    assert written.output.strip() == MARK  # the agent ran the policy's tool call in the sandbox
    main = [c for c in seen if "Bash" in [t["function"]["name"] for t in c.request.get("tools") or ()]]
    assert len(main) == 2 and all(c.native["api"] == "messages" for c in seen)
    back = main[1].request["messages"]
    assert back[-1]["role"] == "tool" and MARK in back[-1]["content"]  # the tool_result came back in chat form
    assert back[-2]["tool_calls"][0]["function"]["name"] == "Bash"
    assert all(r.status == "success" for r in records) and all(r.stream for r in records), summary  # it streams
