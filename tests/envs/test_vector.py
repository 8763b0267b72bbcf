"""Vector envs through a real admin: seeds seed+i, subsets, both autoreset modes, 256 envs at once."""

from __future__ import annotations

import pytest

import rock
from rock.admin.envs.gem import hosted_envs, service
from rock.envs.client import EnvError
from rock.envs.vec_client import AsyncVecEnv

from .reference import play_vec_in_process

GUESS = "game:GuessTheNumber-v0-easy"  # at most 4 turns: episodes end within a few rounds
ROUNDS = [
    {0: "\\boxed{1}", 1: "\\boxed{2}", 2: "\\boxed{3}"},
    {1: "\\boxed{4}"},  # a subset: only env 1 moves
    {2: "\\boxed{5}", 0: "\\boxed{6}"},  # replies in the order given
    {0: "\\boxed{7}", 1: "\\boxed{8}", 2: "\\boxed{9}"},
    {0: "\\boxed{10}", 1: "\\boxed{1}", 2: "\\boxed{2}"},
    {0: "\\boxed{3}", 1: "\\boxed{4}", 2: "\\boxed{5}"},
    {0: "\\boxed{6}", 1: "\\boxed{7}", 2: "\\boxed{8}"},
]


@pytest.fixture
def base_url(admin, monkeypatch):
    monkeypatch.setenv("ROCK_BASE_URL", admin.url)
    return admin.url


def records(obs, rewards, terminated, truncated, infos) -> list[dict]:
    return [{"observation": o, "reward": r, "terminated": te, "truncated": tr, "info": i}
            for o, r, te, tr, i in zip(obs, rewards, terminated, truncated, infos)]


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_vector_semantics_match_the_reference(base_url, mode):
    expected = play_vec_in_process(GUESS, 3, 10, ROUNDS, mode)
    with rock.make_vec(GUESS, 3, autoreset=mode) as vec:
        obs, infos = vec.reset(seed=10)  # env i gets seed 10 + i
        assert [{"observation": o, "info": i} for o, i in zip(obs, infos)] == expected[0]
        ends = 0
        for actions, want in zip(ROUNDS, expected[1:]):
            got = records(*vec.step(actions))
            assert got == want
            ends += sum(r["terminated"] or r["truncated"] for r in got)
        assert ends >= 2  # the rounds did cross episode ends
        if mode == "same_step":
            assert any("final_observation" in r["info"] for w in expected[1:] for r in w)


def test_list_actions_with_none_skip_envs_and_errors_name_the_env(base_url):
    with rock.make_vec(GUESS, 3) as vec:
        vec.reset(seed=1)
        obs, *_ = vec.step([None, "\\boxed{2}", None])
        assert len(obs) == 1
        with pytest.raises(EnvError) as err:
            vec.step({5: "\\boxed{1}"})
        assert err.value.kind == "BadRequest" and "out of range" in err.value.message


async def test_async_vector_env(base_url):
    vec = await AsyncVecEnv.create(GUESS, 4)
    try:
        obs, _ = await vec.reset(seed=0)
        expected = play_vec_in_process(GUESS, 4, 0, [{i: "\\boxed{5}" for i in range(4)}], "same_step")
        assert [{"observation": o} for o in obs] == [{"observation": e["observation"]} for e in expected[0]]
        got = records(*await vec.step(["\\boxed{5}"] * 4))
        assert got == expected[1]
    finally:
        await vec.close()


def test_256_envs_open_at_once(admin, base_url):
    """256 Sokoban envs at once on this 2-core machine: they share a few small sandboxes and
    none runs out of memory (an OOM kill would lose envs and fail the steps)."""
    vec = rock.make_vec("game:Sokoban-v0-easy", 256)
    try:
        sandboxes = sorted({h.split(":")[0] for h in vec.handles})
        assert len(sandboxes) == -(-256 // service(admin.app).settings.envs_per_sandbox)
        obs, _ = vec.reset(seed=0)
        assert len(obs) == 256 and all("Sokoban" in o for o in obs)
        for action in ("\\boxed{up}", "\\boxed{left}"):
            got, *_ = vec.step([action] * 256)
            assert len(got) == 256
        hosted = hosted_envs(admin.app)
        assert sum(len(hosted[s]) for s in sandboxes) >= 256
        for sid in sandboxes:
            stats = admin.call(lambda: admin.ctx.worker.stats(sid))
            if stats.memory_bytes is not None and stats.memory_limit_bytes:
                assert stats.memory_bytes < stats.memory_limit_bytes
    finally:
        vec.close()
