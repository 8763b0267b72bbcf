"""``fork(n)`` of Gymnasium sessions through a real admin with tokens on (docker, bwrap): children
go on from the session's state in sandboxes of their own, single and vector, then differ; the
refusals say why and leave nothing behind (rock.envs.gym.forks)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import httpx
import numpy as np
import pytest

import rock.numpy
from rock.envs.gym import forks as gym_forks
from rock.envs.errors import EnvError
from tests.admin.harness import Admin, backend_params
from tests.envs.full_forks import full_fork_or_refused

TOKEN, OTHER = "token-gym-fork", "token-gym-fork-other"
GYM = "/apis/v1/envs/gym"
HOSTILE = {"packages": [str(Path(__file__).with_name("gym_hostile_pkg"))], "progress": None}


@pytest.fixture(scope="module", params=[*backend_params(), pytest.param("gvisor", marks=pytest.mark.gvisor, id="gvisor")])
def admin(request):
    server = Admin(request.param, tokens={TOKEN: "forker", OTHER: "other"}, allow_direct_requirements=True).start()
    yield server
    server.stop(stop_sandboxes=True)


def running(admin) -> set[str]:
    return {info.sandbox_id for info in admin.ctx.worker.list()}


def session(admin, source: str = "CartPole-v1", cls=rock.numpy.SandboxEnv, **kwargs):
    return cls(source, base_url=admin.url, token=TOKEN, **{"progress": None, **kwargs})


def test_a_session_forked_mid_episode_goes_on_from_its_state_in_sandboxes_of_its_own(admin):
    actions = [0, 1, 1, 0, 1]
    truth = gym.make("CartPole-v1")  # where the session must be: gymnasium in-process, same seed and actions
    truth.reset(seed=3)
    for a in actions:
        truth.step(a)
    with session(admin) as parent:
        parent.reset(seed=3)
        for a in actions:
            parent.step(a)
        children = parent.fork(3)
        try:
            ids = {c.session_id for c in children}
            sandboxes = {c.sandbox_id for c in children}
            assert len(ids) == 3 and parent.session_id not in ids
            assert len(sandboxes) == 3 and parent.sandbox_id not in sandboxes and sandboxes <= running(admin)
            assert all(type(c) is type(parent) and c.env_contract == parent.env_contract for c in children)
            # The same action gives the same step everywhere, gymnasium's own included.
            want = truth.step(1)
            for env in (parent, *children):
                obs, reward, terminated, truncated, _ = env.step(1)
                assert np.array_equal(obs, want[0]) and (reward, terminated, truncated) == want[1:4]
            # Then each goes its own way, and a child is a session like any other: it forks too.
            left, right = children[0].step(0)[0], children[1].step(1)[0]
            assert not np.array_equal(left, right)
            [grandchild] = children[0].fork(1)
            with grandchild:
                assert np.array_equal(grandchild.step(1)[0], children[0].step(1)[0])
        finally:
            for c in children:
                c.close()
        assert not sandboxes & running(admin)  # a child's sandbox stops when it closes


def test_a_vector_session_forks_whole_each_lane_where_the_sources_is(admin):
    with session(admin, cls=rock.numpy.SandboxVectorEnv, num_envs=3) as parent:
        parent.reset(seed=[5, 6, 7])
        for _ in range(12):  # long enough for a lane to end and autoreset (NEXT_STEP) on its own
            parent.step(np.array([1, 1, 0]))
        children = parent.fork(2)
        try:
            assert all(c.num_envs == 3 for c in children)
            steps = [env.step(np.array([0, 1, 1])) for env in (parent, *children)]
            for obs, rewards, terminated, truncated, _ in steps[1:]:
                assert np.array_equal(obs, steps[0][0]) and np.array_equal(rewards, steps[0][1])
                assert np.array_equal(terminated, steps[0][2]) and np.array_equal(truncated, steps[0][3])
        finally:
            for c in children:
                c.close()


def test_fork_refusals_are_4xx_say_why_and_leave_nothing(admin, monkeypatch):
    before = running(admin)
    with session(admin) as parent, httpx.Client(base_url=admin.url + GYM, timeout=600,
                                                headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        path = f"/sessions/{parent.session_id}/fork"
        with pytest.raises(EnvError, match="reset it first") as err:
            parent.fork(2)
        assert err.value.status_code == 400
        parent.reset()
        with pytest.raises(EnvError, match="without a seed") as err:
            parent.fork(2)
        assert err.value.kind == "EnvNotDeterministic" and err.value.status_code == 409
        parent.reset(seed=1)
        for n in (0, 65, 1000, "2", True):
            answer = client.post(path, json={"n": n})
            assert answer.status_code == 422 and "n" in answer.text, (n, answer.text)
        assert client.post(path, json={"n": 1, "count": 1}).status_code == 422  # unknown fields are refused
        assert client.post(path, json={"n": 1, "how": "memory"}).status_code == 422
        # Another tenant's session is absent: 404, and nothing of it is touched.
        other = client.post(path, json={"n": 1}, headers={"Authorization": f"Bearer {OTHER}"})
        assert other.status_code == 404 and "no gym session" in other.text
        assert client.post(f"/sessions/{parent.session_id}:x/fork", json={"n": 1}).status_code == 404
        parent.step(0)
        # An episode longer than a replay keeps (here 20 bytes of actions; one is 16) is refused until a reset.
        monkeypatch.setattr(gym_forks, "MAX_TRAIL_BYTES", 20)
        parent.step(0)
        with pytest.raises(EnvError, match="past what a replay keeps") as err:
            parent.fork(1)
        assert err.value.status_code == 400
        parent.reset(seed=1)
        parent.step(1)
        [child] = parent.fork(1)
        child.close()
        assert running(admin) == before | {parent.sandbox_id}
    assert running(admin) == before


def test_a_non_deterministic_or_failed_env_is_refused_never_forked_into_another_state(admin):
    before = running(admin)
    with session(admin, "rock_gym_hostile:Unseeded", **HOSTILE) as env:
        env.reset(seed=0)
        env.step(1)
        with pytest.raises(EnvError, match="not deterministic") as err:
            env.fork(2)
        assert err.value.kind == "EnvNotDeterministic" and err.value.status_code == 409
        assert running(admin) == before | {env.sandbox_id}  # the children that started are stopped again
    with session(admin, "rock_gym_hostile:Hostile", **HOSTILE) as env:
        env.reset(seed=0)
        with pytest.raises(EnvError, match="refuses action 1"):
            env.step(1)
        env.step(0)
        with pytest.raises(EnvError, match="a step failed in the env") as err:
            env.fork(1)
        assert err.value.status_code == 400
        env.reset(seed=0)  # a reset makes it known again
        env.step(0)
        [child] = env.fork(1)
        with child:
            assert np.array_equal(child.step(0)[0], env.step(0)[0])
    assert running(admin) == before


def test_a_full_fork_on_gvisor_forks_an_unseeded_session_elsewhere_it_is_refused(admin):
    with session(admin) as parent:
        parent.reset()  # no seed: no replay could fork it, a memory fork can
        parent.step(1)
        children = full_fork_or_refused(admin, parent)
        if children is None:
            return
        try:
            assert len({c.sandbox_id for c in children} | {parent.sandbox_id}) == 3
            same = [env.step(0) for env in (parent, *children)]
            assert all(np.array_equal(s[0], same[0][0]) and s[1:4] == same[0][1:4] for s in same)
            assert not np.array_equal(children[0].step(0)[0], children[1].step(1)[0])
        finally:
            for c in children:
                c.close()
        parent.step(1)  # the source goes on, its host reached again
