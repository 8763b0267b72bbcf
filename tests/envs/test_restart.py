"""Envs survive an admin restart: handles keep working, and the new admin lists and reaps them."""

from __future__ import annotations

import pytest

from rock.admin.envs.gem import hosted_envs, service, startup
from rock.envs.client import Env
from tests.admin import harness


@pytest.mark.parametrize("backend", harness.backend_params())
def test_envs_outlive_an_admin_restart(backend):
    first = harness.Admin(backend).start()
    second = None
    try:
        env = Env("game:GuessTheNumber-v0-easy", base_url=first.url)
        env.reset(seed=4)
        before = env.step("\\boxed{5}")
        first.stop(stop_sandboxes=False)  # sandboxes keep running across admin restarts
        second = harness.Admin(backend, state_dir=first.state_dir).start()
        env._http = type(env._http)(second.url)  # same handle, new admin
        second.call(lambda: startup(second.app))
        sandbox_id = env.sandbox_id.split(":")[0]
        assert env.sandbox_id in [e["handle"] for e in hosted_envs(second.app)[sandbox_id]]
        after = env.step("\\boxed{6}")
        assert after[0] != before[0] and "6" in after[0]  # the same game went on
        assert service(second.app).envs[env.sandbox_id].env_id == "game:GuessTheNumber-v0-easy"
        # A new env fills the recovered sandbox's free slots.
        with Env("game:GuessTheNumber-v0-easy", base_url=second.url) as other:
            assert other.sandbox_id.split(":")[0] == sandbox_id
            assert "Guess The Number" in other.reset(seed=1)[0]
        env.close()
        assert env.sandbox_id is None
    finally:
        (second or first).stop(stop_sandboxes=True)
