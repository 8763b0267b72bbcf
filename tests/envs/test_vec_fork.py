"""``fork(n)`` of a GEM vector env through a real admin with tokens on (docker, bwrap, gVisor):
each lane is replayed into new envs beside it, autoresets included, so the children go on from
the vector's state in either autoreset mode, then differ; refusals say which lane and why
(rock.envs.vector.vec_fork)."""

from __future__ import annotations

import httpx
import pytest

from rock.envs.client import EnvError
from rock.envs.vec_client import AsyncVecEnv, VecEnv
from tests.admin.harness import Admin, backend_params

TOKEN, OTHER = "token-vec-fork", "token-vec-fork-other"
GEM = "/apis/v1/envs/gem"
GUESS = "game:GuessTheNumber-v0-easy"  # at most 4 turns: episodes end within a few rounds
# Rounds that end episodes (lanes 0 and 2 run out of turns) before the fork.
ROUNDS = [["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["\\boxed{4}", None, "\\boxed{5}"],
          ["\\boxed{7}", "\\boxed{8}", "\\boxed{9}"], ["\\boxed{10}", "\\boxed{1}", "\\boxed{2}"],
          ["\\boxed{3}", "\\boxed{4}", "\\boxed{5}"]]
AFTER = [["\\boxed{6}", "\\boxed{7}", "\\boxed{8}"], ["\\boxed{2}", "\\boxed{9}", "\\boxed{4}"]]


@pytest.fixture(scope="module", params=[*backend_params(), pytest.param("gvisor", marks=pytest.mark.gvisor, id="gvisor")])
def admin(request):
    server = Admin(request.param, tokens={TOKEN: "forker", OTHER: "other"}).start()
    yield server
    server.stop(stop_sandboxes=True)


def sandboxes(vec) -> list[str]:
    return [h.rsplit(":", 1)[0] for h in vec.handles]


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_a_vector_env_forks_lane_by_lane_across_its_autoresets(admin, mode):
    vec = VecEnv.create(GUESS, 3, autoreset=mode, base_url=admin.url, token=TOKEN)
    children = []
    try:
        vec.reset(seed=10)
        ends = 0
        for actions in ROUNDS:
            _, _, terminated, truncated, _ = vec.step(actions)
            ends += sum(terminated) + sum(truncated)
        assert ends >= 1  # an episode ended, so some lane was reset without a seed of its own
        children = vec.fork(2)
        assert all(c.num_envs == 3 and c.autoreset == mode for c in children)
        assert all(sandboxes(c) == sandboxes(vec) for c in children)  # lane i beside lane i
        assert len({h for v in (vec, *children) for h in v.handles}) == 9
        for actions in AFTER:
            got = [vec.step(actions)] + [c.step(actions) for c in children]
            assert got[1] == got[0] and got[2] == got[0]
        left, right = children[0].step(["\\boxed{1}"] * 3), children[1].step(["\\boxed{10}"] * 3)
        assert left[0] != right[0]
    finally:
        for v in (*children, vec):
            v.close()


def test_vector_fork_refusals_are_4xx_and_say_which_lane(admin):
    vec = VecEnv.create(GUESS, 2, base_url=admin.url, token=TOKEN)
    try:
        with httpx.Client(base_url=admin.url + GEM, timeout=600, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            vec.reset(seed=[4, None])
            with pytest.raises(EnvError, match="lane 1 .*without a seed") as refused:
                vec.fork(2)
            assert refused.value.status_code == 409
            vec.reset(seed=4)
            for n in (0, 65, "2"):
                answer = c.post("/vec/fork", json={"vec_id": vec.vec_id, "n": n})
                assert answer.status_code == 422 and "n" in answer.text, answer.text
            other = c.post("/vec/fork", json={"vec_id": vec.vec_id, "n": 1}, headers={"Authorization": f"Bearer {OTHER}"})
            assert other.status_code == 404
            hosted = c.get("/hosted").json()
            assert sum(len(envs) for envs in hosted.values()) == 2  # no child was left by a refusal
    finally:
        vec.close()


async def test_the_async_vector_client_forks_too(admin):
    vec = await AsyncVecEnv.create(GUESS, 2, base_url=admin.url, token=TOKEN)
    children = []
    try:
        await vec.reset(seed=3)
        await vec.step(["\\boxed{5}", "\\boxed{6}"])
        children = await vec.fork(2)
        assert [type(c) for c in children] == [AsyncVecEnv, AsyncVecEnv]
        got = [await v.step(["\\boxed{2}", "\\boxed{8}"]) for v in (vec, *children)]
        assert got[0] == got[1] == got[2]
    finally:
        for v in (*children, vec):
            await v.close()
