"""Env ops through the real agent process: host start, crash and hang handling, restart."""

import json

import pytest

from rock.errors import AgentError

from .conftest import host_pids
from .hostdriver import HERE


async def make(agent, cls, timeout=5, **kwargs):
    result, _ = await agent.call("env.make", {"env_id": f"test:{cls}", "entry_point": f"hostile_envs:{cls}",
                                              "sys_path": [HERE], "timeout": timeout, "kwargs": kwargs})
    return result["env"]


async def step(agent, env, action="a"):
    return json.loads((await agent.call("env.step", {"env": env, "action": action}))[1])


async def test_gem_env_through_the_agent(agent):
    result, _ = await agent.call("env.make", {"env_id": "game:GuessTheNumber-v0-easy", "timeout": 30})
    env = result["env"]
    _, body = await agent.call("env.reset", {"env": env, "seed": 3})
    assert "Guess The Number" in json.loads(body)["observation"]
    assert set(await step(agent, env, "\\boxed{5}")) == {"observation", "reward", "terminated", "truncated", "info"}
    listed = (await agent.call("env.list"))[0]
    assert [e["env_id"] for e in listed["envs"]] == ["game:GuessTheNumber-v0-easy"]
    assert (await agent.call("env.close", {"env": env}))[0] == {"closed": True}
    with pytest.raises(AgentError) as err:
        await step(agent, env)
    assert err.value.kind == "EnvNotFound"


async def test_a_crashing_host_is_reported_and_replaced(agent):
    good = await make(agent, "Counter")
    bad = await make(agent, "Exits")
    await agent.call("env.reset", {"env": good})
    with pytest.raises(AgentError) as err:
        await step(agent, bad)
    assert err.value.kind == "EnvHostDied" and "exited with status 7" in err.value.message
    # The neighbours shared the process: they are gone, and say why.
    with pytest.raises(AgentError) as err:
        await step(agent, good)
    assert err.value.kind == "EnvLost" and "exited with status 7" in err.value.message
    fresh = await make(agent, "Counter")
    await agent.call("env.reset", {"env": fresh})
    assert (await step(agent, fresh))["observation"] == "n=1 a=a"
    lost = [e for e in (await agent.call("env.list"))[0]["envs"] if e.get("lost")]
    assert {e["env"] for e in lost} == {good, bad}


async def test_a_hang_the_timeout_cannot_reach_kills_only_its_host(agent):
    stuck = await make(agent, "Stuck", timeout=0.3)
    with pytest.raises(AgentError) as err:
        await step(agent, stuck)
    assert err.value.kind == "EnvHostDied" and "stopped answering" in err.value.message
    fresh = await make(agent, "Counter")
    await agent.call("env.reset", {"env": fresh})
    assert (await step(agent, fresh))["observation"] == "n=1 a=a"


async def test_a_python_hang_leaves_the_host_and_its_other_envs_alone(agent):
    spin = await make(agent, "Spins", timeout=0.3)
    good = await make(agent, "Counter")
    await agent.call("env.reset", {"env": good})
    pids = await host_pids(agent)
    with pytest.raises(AgentError) as err:
        await step(agent, spin)
    assert err.value.kind == "EnvTimeout"
    assert (await step(agent, good))["observation"] == "n=1 a=a"
    assert await host_pids(agent) == pids


async def test_batch_spans_envs_and_reports_errors_per_call(agent):
    envs = [await make(agent, "Counter", start=i) for i in range(3)]
    calls = [["reset", e, 1] for e in envs] + [["step", "nope", "a"]]
    _, body = await agent.call("env.batch", {"calls": calls})
    out = json.loads(body)
    assert [o["observation"] for o in out[:3]] == ["n=0", "n=1", "n=2"]
    assert out[3]["error"]["type"] == "EnvNotFound"
