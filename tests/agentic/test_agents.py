"""``sandbox.agent`` (ROCK's RockAgent) with harnesses that work offline, each completing a small
task against a scripted policy answered through the trainer's fast path, once per backend: our
standard-library harness (bash and file-edit tools) and a bring-your-own command line."""

from __future__ import annotations

import asyncio
import json

import pytest

from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox
from rock.sdk.sandbox.agent import AgentBashCommand, RockAgentConfig
from tests.sdk.test_sandbox import config

CALC = "def add(a, b):\n    return a - b\n\nprint(add(2, 3))\n"


def tool(name: str, **args) -> dict:
    return {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"c{len(args)}", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)}}]}}]}


def scripted_fixer(call) -> dict:
    """Run it, fix it, run it again, say done: the step is the number of tool results so far."""
    messages = call.request["messages"]
    results = [m["content"] for m in messages if m["role"] == "tool"]
    assert call.request["tools"][0]["function"]["name"] == "bash"
    if len(results) == 0:
        return tool("bash", command="python3 calc.py")
    if len(results) == 1:
        assert results[0] == "exit code 0\n-1\n", results
        return tool("edit_file", path="calc.py", old_text="a - b", new_text="a + b")
    if len(results) == 2:
        assert results[1] == "edited calc.py"
        return tool("bash", command="python3 calc.py")
    assert results[2] == "exit code 0\n5\n"
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fixed add()"}}]}


@pytest.fixture
async def box(admin, tmp_path):
    (tmp_path / "calc.py").write_text(CALC)
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    yield sandbox, tmp_path
    await sandbox.delete()


async def test_our_harness_fixes_a_bug_with_a_scripted_policy(box):
    sandbox, workdir = box
    cfg = RockAgentConfig.rock_harness(working_dir=str(workdir),
                                      pre_init_cmds=[AgentBashCommand(command="echo pre > ${working_dir}/pre.txt")],
                                      post_init_cmds=[AgentBashCommand(command="test -f ${working_dir}/pre.txt")])
    await sandbox.agent.install(cfg)
    assert sandbox.model_service is sandbox.agent.model_service and sandbox.model_service.is_started
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        result, answered = await asyncio.gather(
            sandbox.agent.run("make add() in calc.py add"),
            trainer.serve(scripted_fixer, sandbox_ids=[sandbox.sandbox_id], wait=2))
        assert result.exit_code == 0, result.output
        assert answered == 4 and '"content": "fixed add()"' in result.output
        fixed = await sandbox.arun(f"cd {sandbox.agent.working_dir} && python3 calc.py")
        assert fixed.output.strip() == "5"
        records = await trainer.trajectory(sandbox.sandbox_id)
        assert [r.status for r in records] == ["success"] * 4
        assert records[3].request["messages"][-1]["content"] == "exit code 0\n5\n"
        # the run's end ended the model session
        assert (await trainer.status(sandbox.sandbox_id)).ended
    finally:
        await trainer.aclose()


BYO = ("python3 -c 'import os, sys; from openai import OpenAI; "
       "r = OpenAI().chat.completions.create(model=\"m\", messages=[{\"role\": \"user\", \"content\": sys.argv[1]}]); "
       "print(r.choices[0].message.content, os.environ[\"OPENAI_BASE_URL\"], os.getcwd()); sys.exit(3)' ${prompt}")


async def test_bring_your_own_command_from_yaml_reports_its_real_exit_code(box, tmp_path):
    sandbox, workdir = box
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps({"run_cmd": BYO, "working_dir": str(workdir), "agent_run_timeout": 120,
                                "agent_run_check_interval": 1, "model_service_config": {"enabled": True}}))
    path = path.rename(tmp_path / "agent.yml")
    await sandbox.agent.install(str(path))

    def echo(call):
        return {"choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": "got " + call.request["messages"][0]["content"]}}]}

    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        result, _ = await asyncio.gather(sandbox.agent.run("it's a 'quoted' prompt"),
                                         trainer.serve(echo, sandbox_ids=[sandbox.sandbox_id], wait=2))
    finally:
        await trainer.aclose()
    assert result.exit_code == 3  # ROCK would say 0
    assert f"got it's a 'quoted' prompt http://127.0.0.1:8080/v1 {sandbox.agent.working_dir}" in result.output
