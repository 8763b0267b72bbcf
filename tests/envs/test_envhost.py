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


def test_frames_larger_than_a_read_arrive_whole(host):
    # The host reads into a 1 MiB buffer: a 3 MiB action comes in several reads, and the next
    # request right after it is answered too.
    host.user_env("c", "Counter")
    host.ok("reset", env="c")
    action = "x" * (3 << 20) + "end"
    assert host.ok("step", env="c", action=action)["observation"] == "n=1 a=" + action
    assert host.ok("step", env="c", action="small")["observation"] == "n=2 a=small"


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


def vstep(host, envs, actions, mode):
    return host.ok("batch", call="vstep", envs=envs, values=actions, autoreset=mode)


def test_batch_same_step_autoreset(host):
    host.user_env("v0", "Counter")
    host.user_env("v1", "Counter", start=1)
    for handle in ("v0", "v1"):
        host.ok("reset", env=handle)
    outs = [vstep(host, ["v0", "v1"], ["a", "b"], "same_step") for _ in range(3)]
    # One list per field, one entry per env in the order asked.
    assert set(outs[0]) == {"observation", "reward", "terminated", "truncated", "info"}
    assert outs[0]["observation"] == ["n=1 a=a", "n=2 a=b"]
    # v0 ends on its 3rd step: the reply carries the reset observation, the final one in info.
    assert outs[2]["terminated"][0] is True and outs[2]["observation"][0] == "n=0"
    assert outs[2]["info"][0] == {"start": 0, "final_observation": "n=3 a=a", "final_info": {}}
    assert outs[2]["observation"][1] == "n=1"  # v1 started at 1 and also ended
    assert vstep(host, ["v0"], ["a"], "same_step")["observation"] == ["n=1 a=a"]


def test_batch_next_step_autoreset_and_errors(host):
    host.user_env("v0", "Counter")
    host.ok("reset", env="v0")
    outs = [vstep(host, ["v0", "missing"], ["a", "a"], "next_step") for _ in range(4)]
    assert outs[2]["terminated"][0] is True and outs[2]["observation"][0] == "n=3 a=a"
    # The step after the end resets instead, ignoring the action, with reward 0.
    assert {f: col[0] for f, col in outs[3].items() if f != "errors"} == {
        "observation": "n=0", "info": {"start": 0}, "reward": 0.0, "terminated": False, "truncated": False}
    # A failed env is null in every column, its error under its position.
    assert outs[0]["errors"]["1"]["type"] == "EnvNotFound"
    assert [col[1] for f, col in outs[0].items() if f != "errors"] == [None] * 5


def test_batch_reset_seeds_each_env_and_checks_its_shape(host):
    host.user_env("r0", "Counter")
    host.user_env("r1", "Counter", start=5)
    out = host.ok("batch", call="reset", envs=["r0", "r1"], values=[1, None])
    assert out == {"observation": ["n=0", "n=5"], "info": [{"start": 0}, {"start": 5}]}
    meta, _ = host.call("batch", call="reset", envs=["r0", "r1"], values=[1])
    assert meta["error"]["type"] == "BadRequest"
    meta, _ = host.call("batch", call="close", envs=["r0"], values=[None])
    assert meta["error"]["type"] == "BadRequest"


def _envhost_module():
    import importlib.util

    from .hostdriver import HOST_SCRIPT

    spec = importlib.util.spec_from_file_location("envhost_under_test", HOST_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reply_encoding_means_what_json_means():
    """The host encodes replies with orjson when it can: whatever it writes must read back as
    json's own encoding would (NaN rewards, None, non-str keys, numpy values, big ints...)."""
    import dataclasses
    import datetime
    import json

    import numpy as np

    envhost = _envhost_module()
    assert envhost._fast_encode is not None  # orjson is installed here: the fast path is what runs

    @dataclasses.dataclass
    class Point:
        x: int

    cases = [
        {"observation": ["plain", "ünïcode \\boxed{1}\n"], "reward": [1.0, 0.5], "terminated": [True, False]},
        {"reward": [float("nan"), float("inf"), -float("inf")]},
        {"info": [{"final_observation": None}]},
        {"info": [{1: "int key", 2.5: "float key"}]},
        {"observation": [np.float32(0.1), np.arange(3), np.int64(7), {"a": np.bool_(True)}]},
        {"observation": [2**70, (1, 2), {3, 1}, b"bytes", Point(1), datetime.date(2026, 11, 21)]},
        {"observation": ["null in a string", "\ud800 lone surrogate"]},
    ]
    for obj in cases:
        fast = json.loads(envhost.dumps(obj))
        exact = json.loads(envhost._encode(obj))
        assert json.dumps(fast, sort_keys=True) == json.dumps(exact, sort_keys=True), obj
