"""Admission on every door: a start past this node's capacity (503) or past its namespace's quota
(429) is refused at once, naming the limit, with nothing left half-made, while the admin still
answers its health check and another namespace starts as before.

One bwrap admin with a small node (``node_memory``) and four namespaces: alice (a quota of one
sandbox and one env host), bob (no quota: the control), carol (one create per minute), dave
(one sandbox, for restarts) and erin (two snapshots of 8 MiB on disk together)."""

from __future__ import annotations

import json

import httpx
import pytest

from rock.admin.context import PREFIX
from rock.agentic.tasks.harness import RolloutOptions
from rock.agentic.tasks.jobs import run_job_sync
from rock.runtime import cgroups
from rock.runtime.host_policy import owner_key
from tests.admin.harness import Admin
from tests.agentic_tasks.conftest import harbor_task

TOKENS = {"adm-alice": "alice", "adm-bob": "bob", "adm-carol": "carol", "adm-dave": "dave", "adm-erin": "erin"}
GEM = "/apis/v1/envs/gem"
GYM = "/apis/v1/envs/gym"
TRAINING = "/apis/v1/training"
ENV = "game:GuessTheNumber-v0-easy"
SMALL = {"memory": "512m", "cpus": 0.5}


@pytest.fixture(scope="module")
def admin():
    server = Admin("bwrap", tokens=TOKENS, node_memory="3g", node_cpus=64, default_memory="1g",
                   quotas={"alice": {"sandboxes": 1, "env_hosts": 1, "snapshots": 0},
                           "carol": {"creates_per_minute": 1, "create_burst": 1},
                           "dave": {"sandboxes": 1},
                           "erin": {"snapshots": 2, "snapshot_bytes": "8m"}}).start()
    yield server
    server.stop(stop_sandboxes=True)


def client(admin: Admin, token: str) -> httpx.Client:
    return httpx.Client(base_url=admin.url, timeout=300, headers={"Authorization": f"Bearer {token}",
                                                                  "X-API-KEY": token})


def refused(r: httpx.Response, status: int, limit: str) -> str:
    """The refusal's message, having checked its status and that it names ``limit``."""
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    body = r.json()
    message = body["message"]
    assert body.get("code") in (status, None, -1) or body.get("error_type") or "status" in body, body
    words = {"sandboxes": "running sandboxes", "env_hosts": "env hosts", "snapshots": "snapshots",
             "node_memory": "memory", "creates_per_minute": "create rate", "snapshot_bytes": "of snapshots on disk"}
    assert words[limit] in message, (limit, message)
    return message


def healthy(admin: Admin) -> None:
    assert httpx.get(admin.url + "/health", timeout=10).status_code == 200


def live_ids(c: httpx.Client) -> set[str]:
    r = c.get(PREFIX + "/sandboxes", params={"state": "running", "page_size": 1000})
    assert r.status_code == 200, r.text
    rows = r.json()["result"]
    rows = rows.get("items", rows.get("sandboxes", [])) if isinstance(rows, dict) else rows
    return {row["sandbox_id"] for row in rows}


def groups(admin: Admin) -> set[str]:
    """The cgroups of this admin's sandboxes (other admins on the machine make their own)."""
    return set(cgroups.owned(owner_key(admin.app.state.rock.worker.owner)))


def usage(c: httpx.Client) -> dict:
    r = c.get(PREFIX + "/quota")
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_every_door_past_a_namespaces_quota_is_429_naming_the_limit(admin):
    alice, bob = client(admin, "adm-alice"), client(admin, "adm-bob")
    try:
        r = alice.post(GEM + "/make", json={"env_id": ENV})  # her one sandbox and her one env host
        assert r.status_code == 200, r.text
        env = r.json()["sandbox_id"]
        before, cgs = live_ids(alice), groups(admin)
        assert before and cgs  # the control: her env sandbox shows in both
        assert usage(alice)["usage"]["sandboxes"] == 1 and usage(alice)["usage"]["env_hosts"] == 1
        refused(alice.post(PREFIX + "/start", json=SMALL), 429, "sandboxes")
        refused(alice.post(PREFIX + "/start_async", json=SMALL), 429, "sandboxes")
        e2b = alice.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
        refused(e2b, 429, "sandboxes")
        assert set(e2b.json()) == {"code", "message"} and e2b.json()["code"] == 429  # E2B's own shape
        refused(alice.post(GEM + "/make", json={"env_id": ENV}), 429, "env_hosts")
        refused(alice.post(GEM + "/vec/make", json={"env_id": ENV, "num_envs": 2}), 429, "env_hosts")
        refused(alice.post(GYM + "/sessions", json={"source": "CartPole-v1", "num_envs": 1}), 429, "env_hosts")
        refused(alice.post(TRAINING + "/create", json={"env_type": "humaneval", "task_id": "HumanEval/100"}),
                429, "env_hosts")
        # nothing half-made: the same sandboxes, cgroups and counts as before the attempts
        assert live_ids(alice) == before and groups(admin) <= cgs
        assert usage(alice)["usage"]["sandboxes"] == 1 and usage(alice)["usage"]["env_hosts"] == 1
        assert usage(alice)["limits"]["sandboxes"] == 1
        healthy(admin)
        # the control: bob, on the same doors, is not held to alice's quota
        r = bob.post(GEM + "/make", json={"env_id": ENV})
        assert r.status_code == 200, r.text
        r = bob.post(PREFIX + "/start", json=SMALL)
        assert r.status_code == 200, r.text
        assert usage(bob)["limits"]["sandboxes"] is None
        # a released sandbox gives its share back: alice may start again once hers is gone
        alice.post(GEM + "/close", json={"sandbox_id": env})
        alice.post(PREFIX + "/delete", json={"sandbox_id": next(iter(before))})
        assert usage(alice)["usage"]["sandboxes"] == 0
        r = alice.post(PREFIX + "/start", json=SMALL)
        assert r.status_code == 200, r.text
        sid = r.json()["result"]["sandbox_id"]
        # fork past her quota: refused before any snapshot is taken; a kept snapshot past hers too
        refused(alice.post(PREFIX + f"/sandboxes/{sid}/fork", json={"count": 1}), 429, "sandboxes")
        refused(alice.post(PREFIX + f"/sandboxes/{sid}/snapshot", json={}), 429, "snapshots")
        r = alice.get(PREFIX + "/snapshots")
        assert r.status_code == 200 and not r.json()["result"], r.text
        alice.post(PREFIX + "/delete", json={"sandbox_id": sid})
        # E2B's fork past her quota: E2B's shape, no child and no snapshot left
        r = alice.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300})
        assert r.status_code == 201, r.text
        box = r.json()["sandboxID"]
        fork = alice.post(f"/sandboxes/{box}/fork", json={"count": 1})
        refused(fork, 429, "sandboxes")
        assert set(fork.json()) == {"code", "message"}
        assert live_ids(alice) == {box} and not alice.get(PREFIX + "/snapshots").json()["result"]
    finally:
        for who in (alice, bob):  # their env sandboxes too (a closed env's sandbox lingers)
            for sid in live_ids(who):
                who.post(PREFIX + "/delete", json={"sandbox_id": sid})
        alice.close()
        bob.close()


def test_every_door_past_the_nodes_capacity_is_503_naming_the_limit(admin):
    bob, alice = client(admin, "adm-bob"), client(admin, "adm-alice")
    r = bob.post(PREFIX + "/start", json={"memory": "2600m", "cpus": 0.5})  # leaves under an env sandbox's 528m
    assert r.status_code == 200, r.text
    filler = r.json()["result"]["sandbox_id"]
    try:
        before, cgs = live_ids(bob), groups(admin)
        assert filler in before and cgs
        refused(bob.post(PREFIX + "/start", json=SMALL), 503, "node_memory")
        e2b = bob.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
        refused(e2b, 503, "node_memory")
        assert set(e2b.json()) == {"code", "message"}
        refused(bob.post(GEM + "/make", json={"env_id": ENV}), 503, "node_memory")
        refused(bob.post(GEM + "/vec/make", json={"env_id": ENV, "num_envs": 2}), 503, "node_memory")
        refused(bob.post(GYM + "/sessions", json={"source": "CartPole-v1", "num_envs": 1}), 503, "node_memory")
        refused(bob.post(TRAINING + "/create", json={"env_type": "humaneval", "task_id": "HumanEval/100"}),
                503, "node_memory")
        refused(bob.post(PREFIX + f"/sandboxes/{filler}/fork", json={"count": 1}), 503, "node_memory")
        refused(alice.post(PREFIX + "/start", json=SMALL), 503, "node_memory")  # the node is everyone's
        assert live_ids(bob) == before and groups(admin) <= cgs
        healthy(admin)
        node = usage(bob)["node"]
        assert node["memory_bytes"] == 3 << 30 and node["memory_reserved_bytes"] >= 2600 << 20
        text = httpx.get(admin.url + "/metrics", headers={"Authorization": "Bearer adm-bob"}, timeout=30).text
        assert 'rock_admission_refused_total{limit="node_memory",status="503"}' in text, text[-2000:]
        assert 'rock_tenant_usage{namespace="bob",resource="sandboxes"}' in text
    finally:
        bob.post(PREFIX + "/delete", json={"sandbox_id": filler})
    r = bob.post(PREFIX + "/start", json=SMALL)  # the room came back with the filler's end
    assert r.status_code == 200, r.text
    bob.post(PREFIX + "/delete", json={"sandbox_id": r.json()["result"]["sandbox_id"]})
    bob.close()
    alice.close()


def test_a_create_rate_answers_429_with_retry_after_on_both_doors(admin):
    carol = client(admin, "adm-carol")
    r = carol.post(PREFIX + "/start", json=SMALL)
    assert r.status_code == 200, r.text
    sid = r.json()["result"]["sandbox_id"]
    try:
        again = carol.post(PREFIX + "/start", json=SMALL)
        refused(again, 429, "creates_per_minute")
        assert 1 <= int(again.headers["Retry-After"]) <= 60
        e2b = carol.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
        refused(e2b, 429, "creates_per_minute")
        assert set(e2b.json()) == {"code", "message"} and int(e2b.headers["Retry-After"]) >= 1
        assert usage(carol)["usage"]["sandboxes"] == 1
        healthy(admin)
    finally:
        carol.post(PREFIX + "/delete", json={"sandbox_id": sid})
        carol.close()


def test_a_restart_past_the_quota_is_refused_and_the_sandbox_stays_stopped(admin):
    dave = client(admin, "adm-dave")
    made = []
    try:
        r = dave.post(PREFIX + "/start", json=SMALL)
        assert r.status_code == 200, r.text
        first = r.json()["result"]["sandbox_id"]
        made.append(first)
        assert dave.post(PREFIX + "/stop", json={"sandbox_id": first}).status_code == 200
        r = dave.post(PREFIX + "/start", json=SMALL)  # the stop gave its share back
        assert r.status_code == 200, r.text
        made.append(r.json()["result"]["sandbox_id"])
        refused(dave.post(PREFIX + "/restart", json={"sandbox_id": first}), 429, "sandboxes")
        r = dave.get(PREFIX + "/get_status", params={"sandbox_id": first, "include_all_states": "true"})
        assert r.json()["result"]["state"] == "stopped", r.text
        assert usage(dave)["usage"]["sandboxes"] == 1
    finally:
        for sid in made:
            dave.post(PREFIX + "/delete", json={"sandbox_id": sid})
        dave.close()


def test_snapshots_past_their_count_or_bytes_on_disk_are_429_and_deleted(admin):
    erin = client(admin, "adm-erin")
    store = admin.app.state.rock.worker.runtime.snapshots.root
    r = erin.post(PREFIX + "/start", json=SMALL)
    assert r.status_code == 200, r.text
    sid = r.json()["result"]["sandbox_id"]

    def write(mib: int) -> None:  # in the sandbox's own root (its writable layer), not a tmpfs
        r = erin.post(PREFIX + "/execute", json={"sandbox_id": sid, "timeout": 60, "command": (
            f"head -c {mib << 20} /dev/urandom > /var/tmp/blob && sync && du -k /var/tmp/blob")})
        assert r.status_code == 200 and r.json()["result"]["exit_code"] == 0, r.text

    def snapshot(name: str) -> httpx.Response:
        return erin.post(PREFIX + f"/sandboxes/{sid}/snapshot", json={"name": name})

    try:
        write(1)
        assert snapshot("erin-small").status_code == 200
        first = usage(erin)
        assert first["usage"]["snapshots"] == 1 and first["usage"]["snapshot_bytes"] >= 1 << 20, first
        assert first["limits"]["snapshot_bytes"] == 8 << 20 and first["limits"]["snapshots"] == 2
        write(12)  # the next snapshot takes more than the 7 MiB left: taken, counted, deleted, refused
        on_disk = set(store.iterdir())
        message = refused(snapshot("erin-big"), 429, "snapshot_bytes")
        assert "was deleted" in message, message
        names = [s["name"] for s in erin.get(PREFIX + "/snapshots").json()["result"]]
        assert len(names) == 1 and names[0].startswith("erin-small") and set(store.iterdir()) == on_disk
        assert usage(erin)["usage"]["snapshot_bytes"] == first["usage"]["snapshot_bytes"]
        write(1)
        assert snapshot("erin-second").status_code == 200
        on_disk = set(store.iterdir())
        refused(snapshot("erin-third"), 429, "snapshots")  # the count: refused before it is taken
        assert set(store.iterdir()) == on_disk
        kept = usage(erin)["usage"]
        text = httpx.get(admin.url + "/metrics", headers={"Authorization": "Bearer adm-erin"}, timeout=30).text
        series = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("rock_tenant_usage{"))
        assert float(series['rock_tenant_usage{namespace="erin",resource="snapshot_bytes"}']) == kept["snapshot_bytes"]
        assert float(series['rock_tenant_usage{namespace="erin",resource="snapshots"}']) == 2 == kept["snapshots"]
        assert 'rock_admission_refused_total{limit="snapshot_bytes",status="429"}' in text
        healthy(admin)
    finally:
        for s in erin.get(PREFIX + "/snapshots").json()["result"]:
            erin.delete(PREFIX + f"/snapshots/{s['name']}")
        erin.post(PREFIX + "/delete", json={"sandbox_id": sid})
        erin.close()


def test_a_jobs_rollouts_past_the_quota_are_each_an_error_naming_the_limit(admin, tmp_path):
    """A job's rollouts start their sandboxes through the same door: at the namespace's quota each
    rollout is an error naming it (the job goes on to its end), nothing is left running, and a
    rollout of the same task runs once the quota has room (the control that the task itself runs)."""
    alice = client(admin, "adm-alice")
    folder = tmp_path / "tasks"
    for name in ("fix-add", "fix-add-too"):
        harbor_task(folder, name)
    options = RolloutOptions(base_url=admin.url, token="adm-alice", policy="oracle")
    r = alice.post(PREFIX + "/start", json=SMALL)  # her one sandbox
    assert r.status_code == 200, r.text
    holder = r.json()["result"]["sandbox_id"]
    try:
        summary = run_job_sync(str(folder), options, out=tmp_path / "full.jsonl", record=False, traces="off")
        assert summary["tasks"] == 2 and summary["errors"] == 2, summary
        rows = [line for line in (tmp_path / "full.jsonl").read_text().splitlines() if line.strip()]
        for rec in map(json.loads, rows):
            assert rec["reward"] == 0.0 and "running sandboxes" in rec["error"], rec["error"]
        assert live_ids(alice) == {holder}  # nothing half-made
        healthy(admin)
    finally:
        alice.post(PREFIX + "/delete", json={"sandbox_id": holder})
    summary = run_job_sync(str(folder), options, tasks=["fix-add"], out=tmp_path / "room.jsonl", record=False,
                           traces="off")
    assert summary["errors"] == 0 and summary["mean_reward"] == 1.0, summary
    assert not live_ids(alice)
    alice.close()
