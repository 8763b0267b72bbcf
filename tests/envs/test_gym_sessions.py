"""Gymnasium envs in sandboxes (seed 003) through a real admin, on docker and bwrap: the seed's
code shape, sameness with gymnasium in-process for every offline family, single and vector,
sync and async, bad input, hostile envs, and a client process that dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rock
import rock.numpy
from rock.envs.errors import EnvError

HOSTILE_PKG = str(Path(__file__).with_name("gym_hostile_pkg"))
HOSTILE = {"packages": [HOSTILE_PKG], "progress": None}

# One env of every family that works offline here; (id, steps, vector mode)
FAMILIES = [
    ("CartPole-v1", 60, "async"),
    ("Taxi-v4", 40, "sync"),
    ("LunarLander-v3", 40, "sync"),
    ("HalfCheetah-v5", 30, "async"),
    ("MiniGrid-Empty-5x5-v0", 30, "sync"),
    ("ALE/Pong-v5", 20, "sync"),
]
PLUGINS = {"MiniGrid": "minigrid", "ALE": "ale_py"}


@pytest.fixture(autouse=True)
def base_url(admin, monkeypatch):
    monkeypatch.setenv("ROCK_BASE_URL", admin.url)
    return admin.url


@pytest.fixture(autouse=True)
def local_packages(admin, monkeypatch):
    """HOSTILE_PKG is a local path: the operator's setting allows it here (tests/envs/test_trust.py
    shows it refused by default)."""
    monkeypatch.setattr(admin.ctx.settings, "allow_direct_requirements", True)


def running(admin) -> set[str]:
    return {info.sandbox_id for info in admin.ctx.worker.list()}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def local(env_id: str, **kwargs):
    prefix = env_id.split("/")[0].split("-")[0]
    if prefix in PLUGINS:
        __import__(PLUGINS[prefix])
    return gym.make(env_id, **kwargs)


def test_seed_shaped_vector_code(admin):
    with rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=8, progress=None) as env:
        sandbox = env.sandbox_id
        assert sandbox in running(admin)
        assert env.num_envs == 8 and env.env_contract.num_envs == 8 and env.env_contract.id == "CartPole-v1"
        assert env.single_observation_space == gym.make("CartPole-v1").observation_space
        assert env.single_action_space == gym.spaces.Discrete(2)
        assert env.action_space.shape == (8,) and env.observation_space.shape == (8, 4)
        assert env.observation_space_spec.kind == "box" and env.action_space_spec.details == {"n": 2, "start": 0}
        obs, info = env.reset(seed=0)
        assert obs.shape == (8, 4) and obs.dtype == np.float32 and obs.flags.writeable
        for _ in range(5):
            obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
        assert rewards.dtype == np.float64 and rewards.shape == (8,)
        assert terminated.dtype == bool and truncated.shape == (8,)
    assert sandbox not in running(admin)  # closing the session stopped its sandbox
    env.close()  # again: nothing to do, no error


@pytest.mark.parametrize("env_id,steps,mode", FAMILIES, ids=[f[0].split("/")[-1] for f in FAMILIES])
def test_same_as_gymnasium_in_process(admin, env_id, steps, mode):
    ref = local(env_id)
    ref.action_space.seed(1)
    actions = [ref.action_space.sample() for _ in range(steps)]
    with rock.numpy.SandboxEnv(env_id, progress=None) as env:
        assert same(env.reset(seed=5)[0], ref.reset(seed=5)[0])
        for i, action in enumerate(actions):
            got, want = env.step(action), ref.step(action)
            assert same(got[:4], want[:4]), (env_id, i)
            if got[2] or got[3]:
                assert same(env.reset(seed=i)[0], ref.reset(seed=i)[0])
    n = 3
    ref = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync") if "/" not in env_id and "MiniGrid" not in env_id \
        else gym.vector.SyncVectorEnv([lambda: local(env_id)] * n)
    ref.action_space.seed(2)
    batches = [ref.action_space.sample() for _ in range(steps)]
    with rock.numpy.SandboxVectorEnv(env_id, num_envs=n, vectorization_mode=mode, progress=None) as env:
        assert same(env.reset(seed=9)[0], ref.reset(seed=9)[0])
        for i, batch in enumerate(batches):
            got, want = env.step(batch), ref.step(batch)
            assert same(got[:4], want[:4]), (env_id, mode, i)
    ref.close()


def test_next_step_autoreset_and_seed_lists(admin):
    ref = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    with rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=4, vectorization_mode="async", progress=None) as env:
        seeds = [11, None, 13, 14]
        obs, _ = env.reset(seed=seeds)
        assert np.array_equal(obs[[0, 2, 3]], ref.reset(seed=seeds)[0][[0, 2, 3]])
        ref.reset(seed=3), env.reset(seed=3)
        ended = False
        for _ in range(200):  # always push left: episodes end, lanes autoreset on the next step
            got, want = env.step(np.zeros(4, np.int64)), ref.step(np.zeros(4, np.int64))
            assert same(got[:4], want[:4])
            ended = ended or bool(got[2].any())
            if ended and (got[1] == 0).any():
                break
        assert ended and (got[1] == 0).any()  # the step after an end: reset obs, reward 0, flags False


def test_render_returns_the_frame(admin):
    with rock.numpy.SandboxEnv("CartPole-v1", render_mode="rgb_array", progress=None) as env:
        env.reset(seed=0)
        frame = env.render()
        assert env.render_mode == "rgb_array" and frame.shape == (400, 600, 3) and frame.dtype == np.uint8
    with rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=2, render_mode="rgb_array", progress=None) as env:
        env.reset(seed=0)
        assert env.render(env_index=1).shape == (400, 600, 3)
        with pytest.raises(EnvError, match="env_index 2 is out of range"):
            env.render(env_index=2)


def test_bad_actions_are_refused_and_the_session_goes_on(admin):
    with rock.numpy.SandboxEnv("CartPole-v1", progress=None) as env:
        env.reset(seed=0)
        for action, words in ((np.array([1, 0]), "shape"), (0.5, "dtype"), (7, "outside"), ("left", "dtype")):
            with pytest.raises(EnvError, match=words) as err:
                env.step(action)
            assert err.value.status_code == 400
        assert env.step(1)[1] == 1.0
    with rock.numpy.SandboxVectorEnv("HalfCheetah-v5", num_envs=4, progress=None) as env:
        env.reset(seed=0)
        with pytest.raises(EnvError, match="a batch of 3 action") as err:
            env.step(np.zeros((3, 6), np.float32))
        assert err.value.status_code == 400
        with pytest.raises(EnvError, match="shape"):
            env.step(np.zeros((4, 5), np.float32))
        assert env.step(np.zeros((4, 6)))[0].shape == (4, 17)  # float64 actions are cast, as gymnasium would


def test_unknown_ids_name_the_closest_known(admin):
    with pytest.raises(EnvError, match="CartPole-v1") as err:
        rock.numpy.SandboxEnv("CartPol-v1", progress=None)
    assert err.value.kind == "EnvNotFound" and err.value.status_code == 404


def test_hostile_envs_are_contained(admin):
    """An env that raises gets that call's error; one that hangs is interrupted at its timeout and
    marked broken; another session keeps stepping throughout, and the admin keeps serving."""
    other = rock.numpy.SandboxEnv("CartPole-v1", progress=None)
    with rock.numpy.SandboxEnv("rock_gym_hostile:Hostile", timeout=2, **HOSTILE) as env:
        env.reset(seed=0)
        with pytest.raises(EnvError, match="refuses action 1"):
            env.step(1)
        assert np.array_equal(env.step(0)[0], np.full(2, 0.01, np.float32))
        other.reset(seed=0)
        with pytest.raises(EnvError, match="timed out") as err:
            env.step(2)
        assert err.value.status_code == 504
        assert other.step(1)[1] == 1.0
        with pytest.raises(EnvError, match="unusable") as err:
            env.step(0)
        assert err.value.status_code == 409
    other.close()


def test_packages_and_imports_that_fail_are_named(admin):
    with pytest.raises(EnvError, match="rock-no-such-package-xyz") as err:
        rock.numpy.SandboxEnv("CartPole-v1", packages=["rock-no-such-package-xyz"], progress=None)
    assert err.value.kind == "EnvBuildError" and err.value.status_code == 422
    with pytest.raises(EnvError, match="no_such_module_xyz") as err:
        rock.numpy.SandboxEnv("rock_gym_hostile:Hostile", imports=["no_such_module_xyz"], **HOSTILE)
    assert err.value.status_code == 422


def test_seed_options_that_mean_nothing_here_are_refused(admin):
    with pytest.raises(TypeError, match="no longer supports task"):
        rock.numpy.SandboxEnv("CartPole-v1", task="t")
    with pytest.raises(TypeError, match="single-env only"):
        rock.numpy.SandboxEnv("CartPole-v1", num_envs=2)
    with pytest.raises(ValueError, match="num_envs >= 2"):
        rock.numpy.SandboxVectorEnv("CartPole-v1", num_envs=1)
    with pytest.raises(TypeError, match="list of strings"):
        rock.numpy.SandboxEnv("CartPole-v1", packages="gymnasium")
    with pytest.raises(EnvError, match="trust_remote_code"):
        rock.numpy.SandboxEnv("hf://someone/some-env@abc123")
    with pytest.raises(EnvError, match="not pinned"):
        rock.numpy.SandboxEnv("hf://someone/some-env", trust_remote_code=True)
    with pytest.raises(EnvError, match="no internet") as err:
        rock.numpy.SandboxEnv("hf://someone/some-env@abc123", trust_remote_code=True)
    assert err.value.kind == "EnvUnavailable"


def test_a_session_whose_client_process_died_is_reaped(admin, tmp_path):
    script = tmp_path / "dies.py"
    script.write_text(
        "import os, sys, rock.numpy\n"
        "env = rock.numpy.SandboxEnv('CartPole-v1', lease=1.0, progress=None)\n"
        "print(env.sandbox_id, flush=True)\n"
        "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, str(script)], env={**os.environ, "ROCK_BASE_URL": admin.url},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    sandbox = proc.stdout.strip()
    deadline = time.monotonic() + 30
    while sandbox in running(admin) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox not in running(admin)


def test_gym_ids_through_the_gem_front_door(admin):
    """rock.make / rock.make_vec take gym: ids like GEM ids; values come back as JSON."""
    ref = gym.make("CartPole-v1")
    env = rock.make("gym:CartPole-v1")
    try:
        obs, _ = env.reset(seed=4)
        assert np.allclose(obs, ref.reset(seed=4)[0])
        got, want = env.step(1), ref.step(1)
        assert np.allclose(got[0], want[0]) and got[1:4] == want[1:4]
    finally:
        env.close()
    envs = rock.make_vec("gym:CartPole-v1", num_envs=3)
    try:
        envs.reset(seed=1)
        result = envs.step([0, 1, 0])
        assert len(result[0]) == 3 and list(result[1]) == [1.0, 1.0, 1.0]
    finally:
        envs.close()
    with pytest.raises(EnvError, match="CartPole-v1"):
        rock.make("gym:CartPol-v1")


def test_rock_envs_list_shows_gym_ids(admin):
    rock.numpy.SandboxEnv("CartPole-v1", progress=None).close()  # its image exists from here on
    proc = subprocess.run([sys.executable, "-m", "rock.cli.main", "envs", "--url", admin.url, "list", "--quick",
                           "--family", "gym", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    ids = {e["id"] for e in json.loads(proc.stdout)}
    assert {"gym:CartPole-v1", "gym:HalfCheetah-v5", "gym:LunarLander-v3", "gym:MiniGrid-Empty-5x5-v0",
            "gym:ALE/Pong-v5", "gym:Taxi-v4"} <= ids


TORCH_DIR = Path(os.environ.get("ROCK_TEST_TORCH_DIR", "/var/tmp/rock-test-torch"))
TORCH_CPU = "torch==2.13.0+cpu"  # PyPI's CPU-only build (the default wheel drags in CUDA's GBs)
TORCH_SCRIPT = """
import sys
sys.path.append(sys.argv[1])  # after site-packages: torch's own folder must not shadow numpy & co
import torch
import rock.torch
with rock.torch.SandboxVectorEnv("CartPole-v1", num_envs=4, progress=None) as env:
    obs, info = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.shape == (4, 4) and obs.dtype == torch.float32, obs
    obs, rewards, terminated, truncated, info = env.step(torch.ones(4, dtype=torch.int64))
    assert rewards.dtype == torch.float64 and terminated.dtype == torch.bool and truncated.shape == (4,)
with rock.torch.SandboxEnv("CartPole-v1", progress=None) as env:
    obs, _ = env.reset(seed=1)
    obs, reward, terminated, truncated, _ = env.step(torch.tensor(1))
    assert isinstance(obs, torch.Tensor) and type(reward) is float and type(terminated) is bool
print("ok")
"""


@pytest.fixture(scope="session")
def torch_dir():
    probe = [sys.executable, "-c", f"import sys; sys.path.append({str(TORCH_DIR)!r}); import torch"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(TORCH_DIR), TORCH_CPU],
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            pytest.fail(f"installing {TORCH_CPU} failed:\n{proc.stderr[-2000:]}")
    return TORCH_DIR


def test_torch_sessions_give_tensors(admin, torch_dir, tmp_path):
    script = tmp_path / "torch_env.py"
    script.write_text(TORCH_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(torch_dir)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ROCK_BASE_URL": admin.url})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_rock_torch_without_torch_says_how_to_get_it(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import rock.torch"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "pip install torch" in proc.stderr


def test_registered_names_bring_their_packages_and_defaults(admin):
    import httpx

    env = {"id": "test-gym-hostile", "entry_point": "rock_gym_hostile:Hostile", "packages": [HOSTILE_PKG],
           "kwargs": {"hang_seconds": 0.01}}
    reply = httpx.post(admin.url + "/apis/v1/envs/gem/register", json=env, params={"replace": True}, timeout=300)
    assert reply.status_code == 200, reply.text
    try:
        with rock.numpy.SandboxEnv("test-gym-hostile", progress=None) as session:
            session.reset(seed=0)
            assert session.step(2)[1] == 1.0  # hangs only 10 ms: the registered default reached the constructor
    finally:
        httpx.post(admin.url + "/apis/v1/envs/gem/unregister", json={"id": env["id"]}, timeout=60)
