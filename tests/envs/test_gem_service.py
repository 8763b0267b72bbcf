"""GEM envs through a real admin (docker and bwrap): the seed samples unchanged, the real rl-rock
SDK, sameness with in-process gem, kwargs, errors, lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rock
from rock.admin.envs.gem import hosted_envs, service
from rock.envs.client import AsyncEnv, AsyncHttp, EnvError, make

from .reference import GAMES, play_in_process, play_remote

from tests.seeds import missing, python_blocks


@pytest.fixture
def base_url(admin, monkeypatch):
    monkeypatch.setenv("ROCK_BASE_URL", admin.url)
    return admin.url


def gem_samples() -> list:
    out = []
    for prefix, marker in (("000", "def main():"), ("001", "env = rock.make(env_id)")):
        code = next((b for b in python_blocks(prefix) if "rock.make" in b and marker in b), None)
        out.append(pytest.param(code, id=f"{prefix}-gem"))
    return out


@pytest.mark.parametrize("code", gem_samples())
def test_seed_gem_sample_runs_unchanged(admin, tmp_path, code):
    if code is None:
        pytest.fail(missing("the seed GEM sample"))
    script = tmp_path / "sample.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], env={**os.environ, "ROCK_BASE_URL": admin.url},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if "Episode finished" in code:
        assert "Episode finished!" in proc.stdout
    # The sample closed its env: no env of game:Sokoban is left hosted by it.
    assert not [e for envs in hosted_envs(admin.app).values() for e in envs if e["env_id"] == "game:Sokoban-v0-easy"]


def test_real_rl_rock_sdk_make_reset_step_close(admin, rlrock_python, tmp_path):
    """rl-rock's own rock.make, in its own venv, against our admin: its wire shapes are the arbiter."""
    script = tmp_path / "rlrock_gem.py"
    script.write_text(
        "import json, rock\n"
        "env = rock.make('game:Sokoban-v0-easy')\n"
        "obs, info = env.reset(seed=42)\n"
        "step = env.step('\\\\boxed{up}')\n"
        "env.close()\n"
        "print(json.dumps({'obs': obs, 'info': info, 'step': list(step), 'module': rock.__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([rlrock_python, str(script)], env={**env, "ROCK_BASE_URL": admin.url},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "rlrock" in out["module"] and "/work/main" not in out["module"]  # really rl-rock's client
    assert "Sokoban" in out["obs"] and "suffix" in out["info"]
    obs, reward, terminated, truncated, info = out["step"]
    assert isinstance(obs, str) and isinstance(reward, float) and terminated in (True, False)
    # The same seed in-process gives the same first observation.
    assert play_in_process("game:Sokoban-v0-easy", 42, [])[0][0]["observation"] == out["obs"]


def test_same_seed_and_actions_as_in_process_gem(base_url):
    """Several games, all open at once and stepped in turn (so they share env hosts), against
    each game played alone in this process with the same seed and actions."""
    expected, games = {}, []
    for env_id, seed, steps in GAMES:
        expected[env_id], actions = play_in_process(env_id, seed, steps=steps)
        games.append((env_id, seed, actions))
    got = play_remote(games)
    for env_id, _, _ in games:
        assert got[env_id] == expected[env_id], env_id


def test_kwargs_reach_the_constructor(base_url):
    with make("game:GuessTheNumber-v0-hard", max_turns=2, min_number=1, max_number=1000) as env:
        obs, _ = env.reset(seed=1)
        assert "between 1 and 1000" in obs and "within 2 turns" in obs
        assert env.step("\\boxed{1}")[3] is False
        *_, terminated, truncated, _ = env.step("\\boxed{2}")
        assert terminated or truncated


def test_unknown_and_unavailable_ids_say_why(base_url):
    with pytest.raises(EnvError) as err:
        rock.make("game:Sokobn-v0-easy")
    assert err.value.kind == "EnvNotFound" and err.value.status_code == 404
    assert "game:Sokoban-v0-easy" in err.value.message
    with pytest.raises(EnvError) as err:
        rock.make("game:Wordle-v0-easy")
    assert err.value.kind == "EnvUnavailable" and "NLTK 'words' corpus" in err.value.message
    with pytest.raises(EnvError) as err:
        rock.make("game:FifteenPuzzle-v0-random")
    assert err.value.kind in ("EnvUnavailable", "EnvMakeError") and "TypeError" in err.value.message


def test_catalog_lists_every_id_with_reasons(admin):
    import httpx

    envs = {e["id"]: e for e in httpx.get(admin.url + "/apis/v1/envs/gem/catalog", timeout=900).json()["envs"]}
    assert envs["game:Sokoban-v0-easy"]["available"] and envs["rg:basic_arithmetic"]["available"]
    for env_id in ("game:Wordle-v0-easy", "game:Hangman-v0-hard", "game:WordSearch-v0-random"):
        assert not envs[env_id]["available"] and "NLTK 'words' corpus" in envs[env_id]["reason"]
    for env_id in ("game:FifteenPuzzle-v0-random", "rg:composite", "rg:boxnet"):
        assert not envs[env_id]["available"] and envs[env_id]["reason"].startswith("fails inside gem"), env_id
    assert envs["game:Crosswords-v0-easy"]["available"]  # pandas is installed


async def test_async_twin_runs_many_envs_from_one_loop(base_url):
    import asyncio

    http = AsyncHttp()
    envs = await asyncio.gather(*(AsyncEnv.create("game:GuessTheNumber-v0-easy", http=http) for _ in range(8)))
    try:
        firsts = await asyncio.gather(*(env.reset(seed=i) for i, env in enumerate(envs)))
        steps = await asyncio.gather(*(env.step("\\boxed{5}") for env in envs))
        assert all("Guess The Number" in obs for obs, _ in firsts)
        expected = [play_in_process("game:GuessTheNumber-v0-easy", i, ["\\boxed{5}"])[0][1] for i in range(8)]
        assert [s[0] for s in steps] == [e["observation"] for e in expected]
    finally:
        await asyncio.gather(*(env.close() for env in envs))
        await http.aclose()


def test_close_idle_ttl_and_hosted_listing(admin, base_url):
    env = make("game:TowerofHanoi-v0-easy")
    sandbox_id = env.sandbox_id.split(":")[0]
    assert env.sandbox_id in [e["handle"] for e in hosted_envs(admin.app)[sandbox_id]]
    import httpx

    listed = httpx.get(admin.url + "/apis/envs/sandbox/v1/sandboxes", timeout=60).json()["result"]["items"]
    envs = {i["sandbox_id"]: i["envs"] for i in listed}[sandbox_id]
    assert [(e["handle"], e["env_id"]) for e in envs] == [(env.sandbox_id, "game:TowerofHanoi-v0-easy")]
    svc = service(admin.app)
    svc.envs[env.sandbox_id].last_used -= svc.settings.idle_ttl + 1  # as if idle for longer than the TTL
    closed, _ = admin.call(svc.reap)
    assert env.sandbox_id in closed
    with pytest.raises(EnvError) as err:
        env.reset()
    assert err.value.kind == "EnvNotFound"
    assert env.sandbox_id not in [e["handle"] for e in hosted_envs(admin.app).get(sandbox_id, [])]
    # An env sandbox left empty is stopped once its linger time has passed.
    sb = svc.by_id.get(sandbox_id)
    if sb is not None and not sb.envs and not sb.reserved:
        sb.empty_since -= svc.settings.sandbox_linger + 1
        _, stopped = admin.call(svc.reap)
        assert sandbox_id in stopped
        assert sandbox_id not in {i.sandbox_id for i in admin.ctx.worker.list()}


def test_steps_go_over_the_admins_own_link_and_through_the_agent_without_it(admin, base_url):
    """A made env's reset and step go straight to its env host's socket (rock.envs.hostlink), not
    through the sandbox's agent; with that link gone they go through the agent, same answers."""
    with make("game:GuessTheNumber-v0-hard", max_turns=3, min_number=1, max_number=1000) as env:
        sandbox_id = env.sandbox_id.split(":")[0]
        svc = service(admin.app)
        link = svc.links.get(sandbox_id)
        assert link is not None, "the make opened no link to the env host"
        first = next(link.ids)  # the link numbers its calls: two calls take the next two ids
        over_link = env.reset(seed=7), env.step("\\boxed{500}")
        assert next(link.ids) == first + 3

        async def drop():
            svc.links.drop(sandbox_id)

        admin.call(drop)
        through_agent = env.reset(seed=7), env.step("\\boxed{500}")
        assert svc.links.get(sandbox_id) is None and link.closed
        assert through_agent == over_link


def test_user_registered_env(admin, base_url):
    """An env class of the user's under its own id: module:Class, loaded inside the sandbox."""
    import httpx

    probe = make("game:GuessTheNumber-v0-easy")  # an env sandbox to put the user's code in
    sandbox_id = probe.sandbox_id.split(":")[0]
    code = (Path(__file__).with_name("hostile_envs.py")).read_bytes()
    admin.call(lambda: admin.ctx.worker.agent(sandbox_id).write_file("/tmp/userenvs/hostile_envs.py", code))
    spec = {"id": "test:counter", "entry_point": "hostile_envs:Counter", "sys_path": ["/tmp/userenvs"],
            "kwargs": {"start": 5}}
    reply = httpx.post(admin.url + "/apis/v1/envs/gem/register", params={"replace": True}, json=spec, timeout=600)
    assert reply.status_code == 200, reply.text
    try:
        with make("test:counter") as env:
            assert env.sandbox_id.split(":")[0] == sandbox_id  # packed beside the other env
            assert env.reset(seed=3) == ("n=5", {"start": 5})
            assert env.step("x")[0] == "n=6 a=x"
        with make("test:counter", start=0) as env:  # make() kwargs win over the registered ones
            assert env.reset()[0] == "n=0"
    finally:
        probe.close()
        httpx.post(admin.url + "/apis/v1/envs/gem/unregister", json={"id": "test:counter"})


def test_make_after_its_env_sandbox_was_deleted_underneath(admin, base_url):
    """The pooled env sandbox is deleted through the sandbox API (or cleared, or crashed) while the
    env service still counts it: the next make goes to a new sandbox instead of answering 409."""
    import httpx

    first = make("game:GuessTheNumber-v0-hard")
    old = first.sandbox_id.split(":")[0]
    first.close()
    reply = httpx.post(admin.url + "/apis/envs/sandbox/v1/delete", json={"sandbox_id": old}, timeout=120)
    assert reply.status_code == 200, reply.text
    assert old in service(admin.app).by_id  # the service has not noticed yet
    second = make("game:GuessTheNumber-v0-hard")
    try:
        assert second.sandbox_id.split(":")[0] != old
        observation, _ = second.reset(seed=1)
        assert observation
        assert old not in service(admin.app).by_id
    finally:
        second.close()
