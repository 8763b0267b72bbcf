"""The GEM hot path (reset/step/vec-step, fast routes at the app's door, rock.admin.doors) answers
exactly like the routes would."""

from __future__ import annotations

import pytest

import rock
from rock.admin.doors import Doors
from rock.envs.client import EnvError
from tests.admin import harness


@pytest.fixture(scope="module", params=harness.backend_params())
def hot_admin(request):
    """An admin whose door table answers GEM's reset, step and vec-step (checked, not assumed)."""
    original = harness.create_app

    def create_app(settings):
        app = original(settings)
        assert isinstance(app.doors, Doors)
        for path in ("/reset", "/step", "/vec/step"):
            assert app.doors.match("POST", "/apis/v1/envs/gem" + path) is not None, path
        return app

    harness.create_app = create_app
    try:
        server = harness.Admin(request.param).start()
    finally:
        harness.create_app = original
    yield server
    server.stop(stop_sandboxes=True)


def test_hot_path_serves_the_gem_routes(hot_admin, monkeypatch):
    monkeypatch.setenv("ROCK_BASE_URL", hot_admin.url)
    with rock.make("game:GuessTheNumber-v0-easy") as env:
        obs, info = env.reset(seed=3)
        assert "Guess The Number" in obs and "suffix" in info
        assert len(env.step("\\boxed{5}")) == 5
        handle = env.sandbox_id
    with pytest.raises(EnvError) as err:  # errors map as on the routes: kind and status
        rock.envs.client.SyncHttp().post("/step", {"sandbox_id": handle, "action": "x"})
    assert err.value.kind == "EnvNotFound" and err.value.status_code == 404
    with pytest.raises(Exception) as bad:
        rock.envs.client.SyncHttp().post("/step", {"action": "x"})
    assert getattr(bad.value, "status_code", None) == 422
    with rock.make_vec("game:GuessTheNumber-v0-easy", 2) as vec:
        vec.reset(seed=0)
        obs, rewards, *_ = vec.step({1: "\\boxed{5}"})
        assert len(obs) == 1 and isinstance(rewards[0], float)
        # A full step's body is read without the model; what the model refuses is still refused.
        http = rock.envs.client.SyncHttp()
        assert len(vec.step(["\\boxed{1}", "\\boxed{2}"])[0]) == 2
        for bad in ({"vec_id": vec.vec_id, "actions": ["a", "b"], "more": 1}, {"vec_id": "", "actions": []},
                    {"vec_id": vec.vec_id, "actions": "a"}):
            with pytest.raises(Exception) as err:
                http.post("/vec/step", bad)
            assert getattr(err.value, "status_code", None) == 422, bad
        with pytest.raises(EnvError) as err:
            http.post("/vec/step", {"vec_id": "vec-nope", "actions": ["a"]})
        assert err.value.kind == "EnvNotFound"
