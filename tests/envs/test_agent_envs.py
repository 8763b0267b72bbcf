"""Env ops through the real agent process: host start, crash and hang handling, restart."""

import json

import pytest

from rock.errors import AgentError
from rock.worker.agent_client import AgentClient

from .conftest import host_pids
from .hostdriver import HERE


async def make(env_agent, cls, timeout=5, **kwargs):
    result, _ = await env_agent.call("env.make", {"env_id": f"test:{cls}", "entry_point": f"hostile_envs:{cls}",
                                              "sys_path": [HERE], "timeout": timeout, "kwargs": kwargs})
    return result["env"]


async def step(env_agent, env, action="a"):
    return json.loads((await env_agent.call("env.step", {"env": env, "action": action}))[1])


async def test_gem_env_through_the_agent(env_agent):
    result, _ = await env_agent.call("env.make", {"env_id": "game:GuessTheNumber-v0-easy", "timeout": 30})
    env = result["env"]
    _, body = await env_agent.call("env.reset", {"env": env, "seed": 3})
    assert "Guess The Number" in json.loads(body)["observation"]
    assert set(await step(env_agent, env, "\\boxed{5}")) == {"observation", "reward", "terminated", "truncated", "info"}
    listed = (await env_agent.call("env.list"))[0]
    assert [e["env_id"] for e in listed["envs"]] == ["game:GuessTheNumber-v0-easy"]
    assert (await env_agent.call("env.close", {"env": env}))[0] == {"closed": True}
    with pytest.raises(AgentError) as err:
        await step(env_agent, env)
    assert err.value.kind == "EnvNotFound"


async def test_make_with_reset_answers_the_reset_in_one_call(env_agent):
    """``reset`` (its seed) in env.make: the reset's fields are the reply's body, as a separate
    reset's would be; a reset that fails fails the make and leaves no env behind."""
    made, body = await env_agent.call("env.make", {"env_id": "test:Counter", "entry_point": "hostile_envs:Counter",
                                                   "sys_path": [HERE], "kwargs": {"start": 4}, "reset": 11})
    assert json.loads(body) == {"observation": "n=4", "info": {"start": 4}}
    first = (await step(env_agent, made["env"]))["reward"]
    _, again = await env_agent.call("env.reset", {"env": made["env"], "seed": 11})
    assert json.loads(again) == json.loads(body) and (await step(env_agent, made["env"]))["reward"] == first
    with pytest.raises(AgentError) as err:
        await env_agent.call("env.make", {"env_id": "test:ResetRaises", "entry_point": "hostile_envs:ResetRaises",
                                          "sys_path": [HERE], "reset": 5})
    assert "no reset for seed 5" in err.value.message
    listed = (await env_agent.call("env.list"))[0]["envs"]
    assert [e["env"] for e in listed] == [made["env"]]


async def test_a_crashing_host_is_reported_and_replaced(env_agent):
    good = await make(env_agent, "Counter")
    bad = await make(env_agent, "Exits")
    await env_agent.call("env.reset", {"env": good})
    with pytest.raises(AgentError) as err:
        await step(env_agent, bad)
    assert err.value.kind == "EnvHostDied" and "exited with status 7" in err.value.message
    # The neighbours shared the process: they are gone, and say why.
    with pytest.raises(AgentError) as err:
        await step(env_agent, good)
    assert err.value.kind == "EnvLost" and "exited with status 7" in err.value.message
    fresh = await make(env_agent, "Counter")
    await env_agent.call("env.reset", {"env": fresh})
    assert (await step(env_agent, fresh))["observation"] == "n=1 a=a"
    lost = [e for e in (await env_agent.call("env.list"))[0]["envs"] if e.get("lost")]
    assert {e["env"] for e in lost} == {good, bad}


async def test_a_hang_the_timeout_cannot_reach_kills_only_its_host(env_agent):
    stuck = await make(env_agent, "Stuck", timeout=0.3)
    with pytest.raises(AgentError) as err:
        await step(env_agent, stuck)
    assert err.value.kind == "EnvHostDied" and "the timeout cannot interrupt it" in err.value.message
    fresh = await make(env_agent, "Counter")
    await env_agent.call("env.reset", {"env": fresh})
    assert (await step(env_agent, fresh))["observation"] == "n=1 a=a"


async def test_a_python_hang_leaves_the_host_and_its_other_envs_alone(env_agent):
    spin = await make(env_agent, "Spins", timeout=0.3)
    good = await make(env_agent, "Counter")
    await env_agent.call("env.reset", {"env": good})
    pids = await host_pids(env_agent)
    with pytest.raises(AgentError) as err:
        await step(env_agent, spin)
    assert err.value.kind == "EnvTimeout"
    assert (await step(env_agent, good))["observation"] == "n=1 a=a"
    assert await host_pids(env_agent) == pids


async def test_the_host_answers_the_worker_directly_on_its_socket(env_agent):
    """reset/step can skip the agent: the host listens beside the agent's socket."""
    result, _ = await env_agent.call("env.make", {"env_id": "test:Counter", "entry_point": "hostile_envs:Counter",
                                                  "sys_path": [HERE]})
    direct = await AgentClient.connect(result["socket"])
    try:
        _, body = await direct.call("step", {"env": result["env"], "action": "d"})
        assert json.loads(body)["observation"] == "n=1 a=d"
        # The agent sees the same env: the state is shared.
        assert (await step(env_agent, result["env"]))["observation"] == "n=2 a=a"
    finally:
        direct.close()


async def test_batch_spans_envs_and_reports_errors_per_call(env_agent):
    envs = [await make(env_agent, "Counter", start=i) for i in range(3)]
    _, body = await env_agent.call("env.batch", {"call": "reset", "envs": envs + ["nope"], "values": [1] * 4})
    out = json.loads(body)
    assert out["observation"] == ["n=0", "n=1", "n=2", None]
    assert out["errors"]["3"]["type"] == "EnvNotFound"
    # No env of the batch has a host: the agent answers in the same shape.
    _, body = await env_agent.call("env.batch", {"call": "vstep", "envs": ["gone"], "values": ["a"]})
    out = json.loads(body)
    assert out["observation"] == out["reward"] == [None] and out["errors"]["0"]["type"] == "EnvNotFound"
