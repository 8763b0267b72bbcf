"""``fork(n)`` of the GEM/gym env view through a real admin with tokens on (docker, bwrap, gVisor):
children go on from the parent's state, then differ; refusals say why (rock.envs.forking)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rock.envs.client import Env, EnvError
from tests.admin.harness import Admin, backend_params
from tests.envs.full_forks import full_fork_or_refused

TOKEN, OTHER = "token-fork", "token-fork-other"
GEM = "/apis/v1/envs/gem"


@pytest.fixture(scope="module", params=[*backend_params(), pytest.param("gvisor", marks=pytest.mark.gvisor, id="gvisor")])
def admin(request):
    server = Admin(request.param, tokens={TOKEN: "forker", OTHER: "other"}).start()
    yield server
    server.stop(stop_sandboxes=True)


def make(admin, env_id: str, token: str = TOKEN, **kwargs) -> Env:
    return Env(env_id, kwargs, base_url=admin.url, token=token)


@contextmanager
def forked(env_id: str, admin, seed: int, actions: list, n: int):
    """An env reset with ``seed`` and stepped with ``actions``, and its ``n`` forks; all closed after."""
    parent = make(admin, env_id)
    children = []
    try:
        parent.reset(seed=seed)
        for action in actions:
            parent.step(action)
        children = parent.fork(n)
        yield parent, children
    finally:
        for env in (*children, parent):
            env.close()


def outcome(step: tuple) -> tuple:
    obs, reward, terminated, truncated, _ = step
    return obs, reward, terminated, truncated


def test_a_gem_env_forked_mid_episode_goes_on_from_its_state_in_every_child(admin):
    with forked("game:GuessTheNumber-v0-hard", admin, 7, ["\\boxed{500}", "\\boxed{250}"], 3) as (parent, children):
        assert len({c.sandbox_id for c in children} | {parent.sandbox_id}) == 4
        # The same action gives the same answer everywhere: same number, same turn of the episode.
        same = [outcome(env.step("\\boxed{100}")) for env in (parent, *children)]
        assert all(s == same[0] for s in same), same
        # Then each goes its own way.
        low, high = outcome(children[0].step("\\boxed{1}")), outcome(children[1].step("\\boxed{1000}"))
        assert low[0] != high[0]
        assert outcome(children[2].step("\\boxed{1}")) == low  # and a replay of the same is the same


def test_a_gym_env_forks_through_the_gem_door(admin):
    with forked("gym:CartPole-v1", admin, 4, [0, 1, 1, 0], 2) as (parent, children):
        same = [outcome(env.step(1)) for env in (parent, *children)]
        assert same[1] == same[0] and same[2] == same[0]
        assert outcome(children[0].step(0))[0] != outcome(children[1].step(1))[0]


def test_fork_refusals_are_4xx_and_say_why(admin):
    parent = make(admin, "game:GuessTheNumber-v0-hard")
    try:
        with httpx.Client(base_url=admin.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as client:
            with pytest.raises(EnvError, match="reset it first") as refused:
                parent.fork(2)
            assert refused.value.status_code == 400
            parent.reset()  # no seed: no replay can reach its state
            with pytest.raises(EnvError, match="without a seed") as refused:
                parent.fork(2)
            assert refused.value.status_code == 409
            parent.reset(seed=1)
            for n in (0, 1000, -1):
                reply = client.post(GEM + "/fork", json={"sandbox_id": parent.sandbox_id, "n": n})
                assert reply.status_code == 400 and "fork count must be 1 to 64" in reply.text, (n, reply.text)
            reply = client.post(GEM + "/fork", json={"sandbox_id": parent.sandbox_id, "n": "many"})
            assert reply.status_code in (400, 422), reply.text
            # Another tenant's fork of it: as a missing env, and nothing made.
            other = httpx.post(admin.url + GEM + "/fork", json={"sandbox_id": parent.sandbox_id, "n": 2},
                               headers={"Authorization": f"Bearer {OTHER}"}, timeout=600)
            assert other.status_code == 404, other.text
            hosted = client.get(GEM + "/hosted").json()
            assert sum(len(envs) for envs in hosted.values()) == 1
            with pytest.raises(EnvError) as refused:
                Env._child(parent, parent.sandbox_id.split(":")[0] + ":e999999").fork(1)
            assert refused.value.status_code == 404
    finally:
        parent.close()


def test_a_non_deterministic_env_is_refused_never_forked_into_another_state(admin):
    probe = make(admin, "game:GuessTheNumber-v0-easy")  # an env sandbox to put the user's code in
    sandbox_id = probe.sandbox_id.split(":")[0]
    code = (Path(__file__).with_name("hostile_envs.py")).read_bytes()
    admin.call(lambda: admin.ctx.worker.agent(sandbox_id).write_file("/tmp/userenvs/hostile_envs.py", code))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    spec = {"id": "test:clocked", "entry_point": "hostile_envs:Clocked", "sys_path": ["/tmp/userenvs"]}
    reply = httpx.post(admin.url + GEM + "/register", params={"replace": True}, json=spec, headers=headers, timeout=600)
    assert reply.status_code == 200, reply.text
    try:
        env = make(admin, "test:clocked")
        try:
            env.reset(seed=3)
            env.step("x")
            with pytest.raises(EnvError, match="not deterministic") as refused:
                env.fork(2)
            assert refused.value.status_code == 409
            hosted = httpx.get(admin.url + GEM + "/hosted", headers=headers, timeout=60).json()
            assert sum(len(envs) for envs in hosted.values()) == 2  # the probe and it: no child left
        finally:
            env.close()
    finally:
        probe.close()
        httpx.post(admin.url + GEM + "/unregister", json={"id": "test:clocked"}, headers=headers, timeout=60)


def test_a_full_fork_on_gvisor_forks_any_env_with_no_replay_elsewhere_it_is_refused(admin):
    parent = make(admin, "game:GuessTheNumber-v0-hard")
    try:
        parent.reset()  # no seed: no replay could fork it, a memory fork can
        parent.step("\\boxed{25}")
        children = full_fork_or_refused(admin, parent)
        if children is None:
            return
        try:
            assert len({c.sandbox_id.split(":")[0] for c in children} | {parent.sandbox_id.split(":")[0]}) == 3
            same = [outcome(env.step("\\boxed{10}")) for env in (parent, *children)]
            assert all(s == same[0] for s in same), same
            assert outcome(children[0].step("\\boxed{1}"))[0] != outcome(children[1].step("\\boxed{50}"))[0]
        finally:
            for child in children:
                child.close()
        assert parent.step("\\boxed{11}")[0]  # the source goes on, its host reached again
    finally:
        parent.close()


async def test_the_async_client_forks_too(admin):
    from rock.envs.client import AsyncEnv, AsyncHttp

    http = AsyncHttp(admin.url, TOKEN)
    try:
        parent = await AsyncEnv.create("game:GuessTheNumber-v0-hard", http=http)
        await parent.reset(seed=3)
        await parent.step("\\boxed{20}")
        children = await parent.fork(2)
        assert [type(c) for c in children] == [AsyncEnv, AsyncEnv]
        same = [outcome(await env.step("\\boxed{30}")) for env in (parent, *children)]
        assert same[0] == same[1] == same[2]
        for env in (*children, parent):
            await env.close()
    finally:
        await http.aclose()
