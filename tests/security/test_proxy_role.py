"""Finding 5: a proxy serves the data plane only, and nothing sent to it creates anything.

Before: ``gem/make`` and ``gym/sessions`` sent to an admin started with ``--role proxy``
answered 404/422 yet started env sandboxes, which outlived the proxy."""

from __future__ import annotations


import httpx
import pytest

from rock.admin.context import PREFIX
from rock.errors import Forbidden
from tests.admin.harness import Admin
from tests.security.conftest import TOKEN_A, TOKENS, execute, rock, start, wait_for

# Each of these starts a sandbox (or an endpoint in one) on an admin.
CREATING = [("POST", "/apis/v1/envs/gem/make", {"env_id": "game:GuessTheNumber-v0"}),
            ("POST", "/apis/v1/envs/gem/vec/make", {"env_id": "game:GuessTheNumber-v0", "num_envs": 4}),
            ("POST", "/apis/v1/envs/gym/sessions", {"source": "CartPole-v1", "num_envs": 4}),
            ("POST", "/apis/v1/envs/gym/images", {"source": "CartPole-v1"}),
            ("POST", PREFIX + "/start", {"memory": "1g"}),
            ("POST", "/v2/sandboxes", {"templateID": "base"})]


def sandboxes_on_disk(admin: Admin) -> set[str]:
    """The sandboxes either process's worker made on the shared state dir (one record file each)."""
    return {p.stem for p in (admin.state_dir / "records").glob("*.json")}


def test_nothing_sent_to_a_proxy_starts_a_sandbox(tenants):
    proxy = Admin(tenants.backend, state_dir=tenants.state_dir, role="proxy", tokens=TOKENS).start()
    try:
        with rock(tenants, TOKEN_A) as alice:
            sid = start(alice)
            before = sandboxes_on_disk(tenants)
            with httpx.Client(base_url=proxy.url, timeout=120,
                              headers={"Authorization": f"Bearer {TOKEN_A}", "X-API-KEY": TOKEN_A}) as via_proxy:
                for method, path, body in CREATING:
                    r = via_proxy.request(method, path, json=body)
                    assert r.status_code in (404, 405), (path, r.status_code, r.text[:300])
                # a sandbox started in the background shows up within seconds: none may
                assert not wait_for(lambda: sandboxes_on_disk(tenants) - before, 8, 0.5)
                # the last guard: the proxy's worker refuses to create one even if a route asked
                spec = tenants.ctx.worker.default_spec("never-made")
                with pytest.raises(Forbidden, match="proxy"):
                    proxy.call(lambda: proxy.ctx.worker.create(spec))
                # control: the proxy was up and serving the data plane of alice's sandbox meanwhile
                r = via_proxy.post(PREFIX + "/execute", json={"sandbox_id": sid, "command": "echo via-proxy"})
                assert r.status_code == 200 and r.json()["result"]["stdout"] == "via-proxy\n", r.text
                # a made env's step is data plane: the proxy serves it, asking the sandbox (which has no env e9)
                r = via_proxy.post("/apis/v1/envs/gem/step", json={"sandbox_id": f"{sid}:e9", "action": "x"})
                assert r.status_code == 404 and "no env 'e9' in this sandbox" in r.text, r.text
            assert sandboxes_on_disk(tenants) == before
            assert execute(alice, sid, "echo direct")["stdout"] == "direct\n"
            alice.post("/delete", json={"sandbox_id": sid})
    finally:
        proxy.stop()
