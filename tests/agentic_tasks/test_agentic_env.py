"""``rock.make("agentic:pypi-bugs", task_id=..., harness="ours")``, per backend: reset gives the
agent's first model request, each step's reply gives the next request, and the last step
carries the verifier's reward: the reference fix as replies earns 1.0, a reply without a tool
call 0.0; the async twin the same; bad ids and actions are clear errors."""

import asyncio
import json

import pytest

import rock
from rock.agentic.tasks.oracle import oracle_command
from rock.agentic.tasks.suites import open_suite
from rock.envs.errors import EnvError


def test_gem_loop_over_a_real_harness(admin, suites):
    task_id = open_suite("pypi-bugs").ids()[0]
    env = rock.make("agentic:pypi-bugs", task_id=task_id, harness="ours", base_url=admin.url)
    try:
        obs, info = env.reset()
        assert info["task_id"] == task_id and info["index"] == 1
        assert obs["messages"][1]["content"] == env.task.instruction and obs["tools"][0]["function"]["name"] == "bash"
        with pytest.raises(EnvError, match="action is the model's reply"):
            env.step(42)
        # the fix as the model's tool call (arguments as a dict: sent as OpenAI's JSON string); the
        # next observation holds its result
        fix = {"id": "c1", "type": "function", "function": {"name": "bash",
                                                             "arguments": {"command": oracle_command(env.task)}}}
        obs, reward, terminated, truncated, info = env.step({"content": None, "tool_calls": [fix]})
        assert (reward, terminated, truncated, info["index"]) == (0.0, False, False, 2)
        assert obs["messages"][-1]["role"] == "tool" and obs["messages"][-1]["content"].startswith("exit code 0")
        obs, reward, terminated, truncated, info = env.step("fixed")
        assert obs is None and reward == 1.0 and terminated and not truncated, info["record"]["error"]
        assert info["resolved"] and len(info["record"]["model_calls"]) == 2 and info["record"]["diff"]
        with pytest.raises(EnvError, match="no model call is waiting"):
            env.step("again")
        # reset again: a new rollout of the same task; ending at once earns nothing
        obs, info = env.reset()
        assert info["index"] == 1 and len(obs["messages"]) == 2
        _, reward, terminated, _, info = env.step("nothing to do")
        assert reward == 0.0 and terminated and info["record"]["diff"] == "" and 0 < info["pass_rate"] < 1
    finally:
        env.close()


def test_async_twin_and_a_close_mid_rollout(admin, suites):
    async def main():
        env = await rock.make_async("agentic:pypi-bugs", harness="ours", base_url=admin.url)
        obs, info = await env.reset(seed=1)
        assert info["task_id"] == open_suite("pypi-bugs").ids()[1]
        assert json.dumps(obs)  # plain JSON for a trainer
        await env.close()  # mid-rollout: its sandboxes go, nothing waits
        with pytest.raises(EnvError, match="no model call is waiting"):
            await env.step("late")

    asyncio.run(asyncio.wait_for(main(), 300))


def test_bad_ids_and_harnesses_are_clear_errors(suites):
    with pytest.raises(EnvError, match=r"unknown suite 'pypi-bug' \(closest: pypi-bugs\)"):
        rock.make("agentic:pypi-bug")
    with pytest.raises(EnvError, match="no task 'cachetool-0000'"):
        rock.make("agentic:pypi-bugs", task_id="cachetool-0000")
    with pytest.raises(EnvError, match="runs a chat harness"):
        rock.make("agentic:pypi-bugs", harness="none")
