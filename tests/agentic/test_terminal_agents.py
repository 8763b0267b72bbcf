"""The npm terminal agents (their env images: rock.agentic.terminal_agents) inside a sandbox without
a network, their model calls answered by a scripted trainer policy through the model endpoint,
once per backend: Claude Code 2.1.328 in print mode on Anthropic Messages, Codex 0.169.0
(``codex exec``) on OpenAI Responses, Qwen Code 0.24.4 and opencode 1.18.33 (``opencode run``) on
chat completions. Each runs the policy's shell tool call in the sandbox, sends
the result back, and ends with the policy's answer; every call streamed."""

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

CLAUDE_MARK, CODEX_MARK, QWEN_MARK = "made-by-claude-code", "made-by-codex", "made-by-qwen-code"
OPENCODE_MARK = "made-by-opencode"


def agent_image(agent: str) -> str:
    try:
        image = asyncio.run(terminal_agents.ensure_image(agent, progress=lambda line: print(f"[{agent}]", line)))
    except EnvError as exc:
        pytest.fail(f"the {agent} env image could not be built ({exc.message})")
    keep_unpacked(image.tag)
    return image.tag


@pytest.fixture(scope="session")
def claude_image() -> str:
    return agent_image("claude-code")


@pytest.fixture(scope="session")
def codex_image() -> str:
    return agent_image("codex")


@pytest.fixture(scope="session")
def qwen_image() -> str:
    return agent_image("qwen-code")


@pytest.fixture(scope="session")
def opencode_image() -> str:
    return agent_image("opencode")


def shell_once(tool: str, args: dict, answer) -> callable:
    """A policy: the agent's shell tool (``tool``, called with ``args``) once, then ``answer(the
    tool's output)``; a call without that tool (a title, a topic check) gets a short text."""
    def policy(call):
        tools = [t["function"]["name"] for t in call.request.get("tools") or ()]
        results = [m for m in call.request["messages"] if m["role"] == "tool"]
        if tool not in tools:
            return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        if not results:
            return {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_rock_1", "type": "function", "function": {"name": tool, "arguments": json.dumps(args)}}]}}],
                "usage": usage}
        out = results[-1]["content"]
        if isinstance(out, list):  # content parts (Qwen Code sends its tool results so)
            out = "".join(p.get("text") or "" for p in out)
        return {"choices": [{"message": {"role": "assistant", "content": answer(out)}}], "usage": usage}
    return policy


async def run_agent(admin, image: str, command: str, env: dict, policy, files: dict[str, str], marker_file: str):
    """The agent's command in a sandbox of ``image`` without a network, answered by ``policy``;
    (observation, calls seen, records, the marker file's content)."""
    sandbox = Sandbox(SandboxConfig(base_url=admin.url, image=image, network=False, memory="2g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        await trainer.start(sandbox.sandbox_id)
        for path, text in files.items():
            await sandbox.write_bytes(path, text.encode())
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        line = f"mkdir -p /tmp/work {shlex.quote(env['HOME'])} && cd /tmp/work && export PROMPT='write the marker file' && env {exports} {command}"
        obs, seen = await run_answered(sandbox, trainer, line, policy, timeout=240)
        records = await trainer.trajectory(sandbox.sandbox_id)
        written = await sandbox.arun(f"cat {marker_file}")
    finally:
        await trainer.aclose()
        await sandbox.delete()
    summary = [(r.index, r.status, r.http_status, r.native and r.native["api"], r.stream, r.error) for r in records]
    assert obs.exit_code == 0, (obs.output[-3000:], summary)
    assert all(r.status == "success" for r in records) and all(r.stream for r in records), summary  # it streams
    return obs, seen, records, written.output.strip()


def with_tool(calls, tool: str) -> list:
    return [c for c in calls if tool in [t["function"]["name"] for t in c.request.get("tools") or ()]]


async def test_claude_code_runs_on_the_messages_endpoint(admin, claude_image):
    policy = shell_once("Bash", {"command": f"echo {CLAUDE_MARK} > /tmp/out.txt && cat /tmp/out.txt",
                                 "description": "write the marker"}, lambda out: f"Done: {out.strip()}")
    obs, seen, _, written = await run_agent(admin, claude_image, terminal_agents.claude_code_command(),
                                            terminal_agents.claude_code_env(), policy, {}, "/tmp/out.txt")
    # stdout: the result object (--output-format json), after a notice that the model name is not one it knows
    result = [json.loads(line) for line in obs.output.splitlines() if line.startswith('{"') and '"result"' in line][-1]
    assert result["is_error"] is False and result["result"] == f"Done: {CLAUDE_MARK}", result
    assert written == CLAUDE_MARK  # the agent ran the policy's tool call in the sandbox
    main = with_tool(seen, "Bash")
    assert len(main) == 2 and all(c.native["api"] == "messages" for c in seen)
    back = main[1].request["messages"]
    assert back[-1]["role"] == "tool" and CLAUDE_MARK in back[-1]["content"]  # the tool_result, in chat form
    assert back[-2]["tool_calls"][0]["function"]["name"] == "Bash"
    native = main[1].native["request"]["messages"][-1]["content"]
    assert [b["type"] for b in native if b["type"] == "tool_result"] == ["tool_result"]


async def test_codex_runs_on_the_responses_endpoint(admin, codex_image):
    policy = shell_once("exec_command", {"cmd": f"echo {CODEX_MARK} > /tmp/out.txt && cat /tmp/out.txt"},
                        lambda out: f"Done: {CODEX_MARK in out}")
    obs, seen, _, written = await run_agent(admin, codex_image, terminal_agents.codex_command(),
                                            terminal_agents.codex_env(), policy,
                                            {"/root/.codex/config.toml": terminal_agents.codex_config()}, "/tmp/out.txt")
    events = [json.loads(line) for line in obs.output.splitlines() if line.startswith('{"')]  # --json: its events
    said = [e["item"]["text"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert said == ["Done: True"], events  # the policy's answer, after the tool's output came back with the marker
    assert written == CODEX_MARK  # Codex ran the policy's command in the sandbox
    main = with_tool(seen, "exec_command")
    assert len(main) == 2 and all(c.native["api"] == "responses" for c in seen)
    back = main[1].native["request"]["input"]  # the function call and its output, as Codex sends them back
    assert [i.get("type") for i in back[-2:]] == ["function_call", "function_call_output"]
    assert back[-1]["call_id"] == "call_rock_1"


async def test_qwen_code_runs_on_chat_completions(admin, qwen_image):
    policy = shell_once("run_shell_command", {"command": f"echo {QWEN_MARK} > /tmp/out.txt && cat /tmp/out.txt",
                                              "description": "write the marker"}, lambda out: f"Done: {QWEN_MARK in out}")
    obs, seen, _, written = await run_agent(admin, qwen_image, terminal_agents.qwen_code_command(),
                                            terminal_agents.qwen_code_env(), policy, {}, "/tmp/out.txt")
    events = json.loads(obs.output[obs.output.index("[{"):])  # --output-format json: its events, as one list
    [result] = [e for e in events if e.get("type") == "result"]
    assert result["is_error"] is False and result["result"] == "Done: True", result
    assert written == QWEN_MARK  # Qwen Code ran the policy's command in the sandbox
    assert all(c.native is None for c in seen)  # chat completions: no native form beside it
    main = [c for c in seen if c.request["messages"][0]["content"].startswith("You are Qwen Code")]
    assert len(main) == 2 and main[1].request["messages"][-1]["role"] == "tool"
    assert main[1].request["messages"][-1]["tool_call_id"] == "call_rock_1"


async def test_opencode_runs_on_chat_completions(admin, opencode_image):
    policy = shell_once("bash", {"command": f"echo {OPENCODE_MARK} > /tmp/out.txt && cat /tmp/out.txt",
                                 "description": "write the marker"}, lambda out: f"Done: {OPENCODE_MARK in out}")
    obs, seen, _, written = await run_agent(admin, opencode_image, terminal_agents.opencode_command(),
                                            terminal_agents.opencode_env(max_steps=5), policy, {}, "/tmp/out.txt")
    events = [json.loads(line) for line in obs.output.splitlines() if line.startswith('{"')]  # --format json
    said = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert said == ["Done: True"], events  # the policy's answer, after the tool's output came back with the marker
    [tool] = [e["part"] for e in events if e.get("type") == "tool_use"]
    assert tool["tool"] == "bash" and tool["state"]["status"] == "completed", tool
    assert written == OPENCODE_MARK  # opencode ran the policy's command in the sandbox
    assert all(c.native is None for c in seen)  # chat completions: no native form beside it
    assert {c.request["model"] for c in seen} == {"rock-policy"}  # its configured provider, nothing else
    main = with_tool(seen, "bash")
    assert len(main) == 2 and main[1].request["messages"][-1]["role"] == "tool"
    assert main[1].request["messages"][-1]["tool_call_id"] == "call_rock_1"


def test_rock_agent_config_sets_up_each_terminal_agent():
    from rock.sdk.sandbox.agent import AgentBashCommand, RockAgentConfig

    for name, make in (("claude-code", RockAgentConfig.claude_code), ("codex", RockAgentConfig.codex),
                       ("qwen-code", RockAgentConfig.qwen_code), ("opencode", RockAgentConfig.opencode)):
        c = make(model="m", env={"EXTRA": "1"}, pre_init_cmds=[AgentBashCommand(command="true")])
        assert c.agent_type == name and "${prompt}" in c.run_cmd and '"$PROMPT"' not in c.run_cmd, c.run_cmd
        assert c.env["EXTRA"] == "1" and c.env["HOME"] and c.model_service_config.models == ["m"]
        assert c.pre_init_cmds[0].command.startswith("mkdir -p ") and c.pre_init_cmds[-1].command == "true"
    assert RockAgentConfig.claude_code(max_turns=3).run_cmd.endswith(" --max-turns 3")
    assert RockAgentConfig.qwen_code(max_turns=4).run_cmd.endswith(" --max-session-turns 4")
    opencode = json.loads(RockAgentConfig.opencode(model="m", max_steps=5).env["OPENCODE_CONFIG_CONTENT"])
    assert opencode["model"] == "rock/m" and opencode["agent"]["build"]["steps"] == 5 and opencode["snapshot"] is False
    assert opencode["provider"]["rock"]["options"]["baseURL"] == f"{terminal_agents.ENDPOINT}/v1"
    assert "config.toml" in RockAgentConfig.codex(model="m").pre_init_cmds[0].command
    known = r"unknown terminal agent 'aider'; one of \['claude-code', 'codex', 'opencode', 'qwen-code'\]"
    with pytest.raises(ValueError, match=known):
        RockAgentConfig.terminal_agent("aider")
