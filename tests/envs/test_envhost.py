"""The env host on its own: spawned as a process and driven through the framing on its pipes."""

import pytest

from .hostdriver import HostDriver


@pytest.fixture
def host():
    driver = HostDriver()
    yield driver
    driver.close()


def test_gem_env_round_trip(host):
    assert host.ok("make", env="s", env_id="game:Sokoban-v0-easy", timeout=60)["env"] == "s"
    obs, info = host.ok("reset", env="s", seed=42).values()
    assert "Sokoban" in obs and "suffix" in info
    step = host.ok("step", env="s", action="\\boxed{up}")
    assert set(step) == {"observation", "reward", "terminated", "truncated", "info"}
    assert isinstance(step["reward"], float) and isinstance(step["terminated"], bool)
    assert host.ok("close", env="s") == {"closed": True}
    meta, _ = host.call("step", env="s", action="\\boxed{up}")
    assert meta["error"]["type"] == "EnvNotFound"


def test_unknown_gem_id_is_a_clear_error(host):
    meta, _ = host.call("make", env="x", env_id="game:NoSuchGame-v0")
    assert meta["error"] == {"type": "EnvNotFound", "message": "gem has no env 'game:NoSuchGame-v0'"}


def test_kwargs_reach_the_constructor(host):
    host.user_env("c", "Counter", start=10)
    assert host.ok("reset", env="c")["observation"] == "n=10"


def test_exceptions_are_contained(host):
    host.user_env("bad", "Raises")
    host.user_env("exit", "SwallowsExit")
    host.user_env("good", "Counter")
    for handle in ("bad", "exit", "good"):
        host.ok("reset", env=handle, seed=1)
    meta, _ = host.call("step", env="bad", action="boom")
    assert meta["error"]["type"] == "EnvError"
    assert "ValueError: boom requested" in meta["error"]["message"] and "hostile_envs.py" in meta["error"]["message"]
    # An exception leaves the env usable (the env decides what a bad action means).
    assert host.ok("step", env="bad", action="fine")["observation"] == "n=1 a=fine"
    meta, _ = host.call("step", env="exit", action="x")
    assert meta["error"]["type"] == "EnvError" and "SystemExit" in meta["error"]["message"]
    assert host.ok("step", env="good", action="a")["observation"] == "n=1 a=a"


@pytest.mark.parametrize("cls", ["Spins", "Sleeps"])
def test_a_hanging_env_times_out_alone(host, cls):
    host.user_env("hang", cls, timeout=0.3)
    host.user_env("good", "Counter")
    host.ok("reset", env="good")
    meta, _ = host.call("step", env="hang", action="x")
    assert meta["error"]["type"] == "EnvTimeout"
    assert "timed out after 0.3s" in meta["error"]["message"]
    meta, _ = host.call("step", env="hang", action="x")
    assert meta["error"]["type"] == "EnvBroken"
    assert host.ok("step", env="good", action="a")["observation"] == "n=1 a=a"
    assert host.ok("close", env="hang") == {"closed": True}


def test_printing_env_does_not_corrupt_the_protocol(host):
    host.user_env("p", "Prints")
    host.ok("reset", env="p")
    assert host.ok("step", env="p", action="a")["observation"] == "n=1 a=a"


def test_each_env_has_its_own_global_rng(host):
    """Counter draws its reward from the module-level ``random``: interleaving two envs must not
    change what either sees compared with running it alone."""
    for handle in ("a", "b", "alone"):
        host.user_env(handle, "Counter", start=-100)
    host.ok("reset", env="alone", seed=5)
    alone = [host.ok("step", env="alone", action="x")["reward"] for _ in range(5)]
    host.ok("reset", env="a", seed=5)
    host.ok("reset", env="b", seed=6)
    mixed_a = []
    for _ in range(5):
        mixed_a.append(host.ok("step", env="a", action="x")["reward"])
        host.ok("step", env="b", action="x")
    assert mixed_a == alone


def test_batch_same_step_autoreset(host):
    host.user_env("v0", "Counter")
    host.user_env("v1", "Counter", start=1)
    for handle in ("v0", "v1"):
        host.ok("reset", env=handle)
    outs = [host.ok("batch", calls=[["vstep", "v0", "a"], ["vstep", "v1", "b"]], autoreset="same_step") for _ in range(3)]
    last0 = outs[2][0]
    # v0 ends on its 3rd step: the reply carries the reset observation, the final one in info.
    assert last0["terminated"] is True and last0["observation"] == "n=0"
    assert last0["info"]["final_observation"] == "n=3 a=a" and last0["info"]["final_info"] == {}
    assert outs[2][1]["observation"] == "n=1"  # v1 started at 1 and also ended
    assert host.ok("batch", calls=[["vstep", "v0", "a"]], autoreset="same_step")[0]["observation"] == "n=1 a=a"


def test_batch_next_step_autoreset_and_errors(host):
    host.user_env("v0", "Counter")
    host.ok("reset", env="v0")
    calls = [["vstep", "v0", "a"], ["vstep", "missing", "a"]]
    outs = [host.ok("batch", calls=calls, autoreset="next_step") for _ in range(4)]
    assert outs[2][0]["terminated"] is True and outs[2][0]["observation"] == "n=3 a=a"
    # The step after the end resets instead, ignoring the action, with reward 0.
    assert outs[3][0] == {"observation": "n=0", "info": {"start": 0}, "reward": 0.0, "terminated": False, "truncated": False}
    assert outs[0][1]["error"]["type"] == "EnvNotFound"
