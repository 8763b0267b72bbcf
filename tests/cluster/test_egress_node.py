"""Egress and secrets on a cluster's node: a sandbox the admin places on a Ray node runs behind
that node's own gate and relay (its worker's), under the policy it was started with and the one
it is given while it runs; the relay sends a bound secret's value, which the node holds in memory
only (given by the admin with the start), while the sandbox holds the placeholder.

One Ray node with its rock worker on bwrap (``rock.cluster.localray``: the worker is a Ray actor in
a process of its own, the remote node's code path), an admin in this process placing on it, and
the small internet of ``tests.security.test_secrets`` (a logging server on ``bound.test`` and
``other.test``, whose names the node's resolver gives through its ``egress_hosts``)."""

from __future__ import annotations

import json
import secrets as pysecrets
import subprocess

import httpx
import pytest

from rock.actions.secrets import placeholder
from rock.admin.context import PREFIX
from rock.cluster.localray import LocalRay
from tests.admin.harness import Admin, free_port
from tests.cluster.test_cluster import wait_for
from tests.conftest import SESSION_ROOT
from tests.security.test_secrets import FETCH, internet  # noqa: F401 - the module's fixture

pytestmark = [pytest.mark.ray, pytest.mark.bwrap]


@pytest.fixture(scope="module")
def node_admin(internet):  # noqa: F811 - the imported fixture
    ray = LocalRay(SESSION_ROOT / "ray-egress", free_port(), {"n1": {"num_cpus": 2, "memory": 2 << 30}},
                   backend="bwrap", egress_hosts=internet.addresses, egress_ca_file=str(internet.ca))
    admin = None
    try:
        ray.start()
        admin = Admin("bwrap", cluster=ray.address).start()
        yield admin, ray
    finally:
        if admin is not None:
            admin.stop()
        ray.stop()


def _fetch(c: httpx.Client, sid: str, url: str, value: str) -> str:
    r = c.post("/execute", json={"sandbox_id": sid, "timeout": 60,
                                 "command": f"python3 /tmp/fetch.py {url} Authorization 'Bearer {value}'"})
    assert r.status_code == 200, r.text
    return r.json()["result"]["stdout"].strip()


def _logged(internet, since: int) -> list[tuple[str, str | None]]:  # noqa: F811
    lines = internet.log.read_text().splitlines()[since:]
    return [(e["host"].split(":")[0], e["authorization"]) for e in map(json.loads, lines)]


def test_a_node_sandbox_runs_under_its_policy_with_brokered_secrets(node_admin, internet):  # noqa: F811
    admin, ray = node_admin
    value = "sk-node-" + pysecrets.token_hex(16)
    ph = placeholder("nodekey")
    with httpx.Client(base_url=admin.url + PREFIX, timeout=120) as c:
        r = c.post("/secrets", json={"name": "nodekey", "value": value, "hosts": ["bound.test"]})
        assert r.status_code == 200, r.text
        r = c.post("/start", json={"memory": "256m", "cpus": 0.5, "egress": {"allow": ["bound.test"], "ports": [8081]},
                                   "secrets": {"API_KEY": "nodekey"}})
        assert r.status_code == 200, r.text
        sid = r.json()["result"]["sandbox_id"]
        try:
            assert admin.ctx.worker.where[sid] == "n1"  # placed on the Ray node, not in the admin
            r = c.post("/execute", json={"sandbox_id": sid, "command": f"cat > /tmp/fetch.py <<'EOF'\n{FETCH}\nEOF\n"
                                         "printf %s \"$API_KEY\"", "timeout": 30})
            assert r.status_code == 200 and r.json()["result"]["stdout"] == ph, r.text

            seen = len(internet.log.read_text().splitlines())
            # the allowed, bound host gets the value; the sandbox sent the placeholder
            got = _fetch(c, sid, "http://bound.test:8081/", ph)
            assert got == "logged", (got, internet.log.read_text())
            # the control: a host the policy does not allow is not reached (nothing logged for it)
            assert _fetch(c, sid, "http://other.test:8081/", ph).startswith("failed:")
            assert _logged(internet, seen) == [("bound.test", f"Bearer {value}")]

            # the policy changed while it runs reaches the node's gate: now other.test is reached,
            # and the secret bound to bound.test arrives there as the placeholder only
            r = c.post(f"/sandboxes/{sid}/egress", json={"egress": {"allow": ["bound.test", "other.test"], "ports": [8081]}})
            assert r.status_code == 200, r.text
            seen = len(internet.log.read_text().splitlines())
            assert _fetch(c, sid, "http://other.test:8081/", ph) == "logged"
            assert _logged(internet, seen) == [("other.test", f"Bearer {ph}")]

            # the value is in the node's memory only: not in its state dir (the records name the
            # placeholder, a control), nor anywhere the sandbox can read
            node_state = str(ray.root / "n1")
            assert subprocess.run(["grep", "-rqF", ph, node_state]).returncode == 0
            assert subprocess.run(["grep", "-rqF", value, node_state]).returncode == 1
            r = c.post("/execute", json={"sandbox_id": sid, "timeout": 30,
                                         "command": "env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"})
            assert ph in r.json()["result"]["stdout"] and value not in r.json()["result"]["stdout"]

            def sent(expected: str) -> bool:
                since = len(internet.log.read_text().splitlines())
                assert _fetch(c, sid, "http://bound.test:8081/", ph) == "logged"
                return _logged(internet, since) == [("bound.test", f"Bearer {expected}")]

            # the node's worker starts again (its sandboxes run on; the values in its memory are
            # gone): it reports the secrets its re-attached sandbox lacks and the admin gives them again
            import ray as ray_api

            from rock.cluster.node import ACTOR_PREFIX, NAMESPACE
            ray_api.kill(ray_api.get_actor(ACTOR_PREFIX + "n1", namespace=NAMESPACE))
            assert ray.start_worker("n1")["sandbox_ids"] == [sid]
            wait_for("the sandbox runs again", lambda: c.get("/get_status", params={"sandbox_id": sid})
                     .json()["result"]["lifecycle_state"] == "running", timeout=30, every=0.5)
            wait_for("the restarted node is given the value again", lambda: sent(value), timeout=30, every=0.5)
            history = c.get("/get_status", params={"sandbox_id": sid}).json()["result"]["state_history"]
            assert "reattached" in [h["event"] for h in history], history  # the worker did start again

            # a new value (the vault's update, as E2B's update route makes it, from a thread of its
            # own) reaches the node that holds the old one
            newer = "sk-node-" + pysecrets.token_hex(16)
            admin.ctx.sandboxes.secrets.update(None, "nodekey", newer)
            wait_for("the node gets the secret's new value", lambda: sent(newer), timeout=30, every=0.5)
            # a deleted secret reaches the node too: the bound host then gets the placeholder
            assert c.delete("/secrets/nodekey").status_code == 200
            wait_for("the node forgets a deleted secret", lambda: sent(ph), timeout=30, every=0.5)
        finally:
            c.post("/delete", json={"sandbox_id": sid})
