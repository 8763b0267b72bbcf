"""A real cluster: three Ray nodes on this machine (n1: 4 cpus 4 GiB zone=a; n2, n3: 2 cpus 2 GiB
zone=b), each with its own rock worker on bwrap; two admins and two proxies on one PostgreSQL.

The tests run in this order and share the cluster; each stops what it started."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from rock.cluster.client import HEARTBEAT_TIMEOUT_S
from rock.errors import SandboxNotFound, SandboxNotRunning

pytestmark = [pytest.mark.ray, pytest.mark.bwrap]
API = "/apis/envs/sandbox/v1"


def call(base: str, method: str, path: str, body: dict | None = None, timeout: float = 60) -> httpx.Response:
    return httpx.request(method, base + API + path, json=body, timeout=timeout)


def ok(reply: httpx.Response):
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]


def start(base: str, **body) -> dict:
    return ok(call(base, "POST", "/start", {"memory": "256m", "cpus": 0.5, "auto_clear_seconds": 0, **body}))


def execute(base: str, sid: str, command: str, timeout: float = 60) -> dict:
    return ok(call(base, "POST", "/execute", {"sandbox_id": sid, "command": command, "timeout": timeout},
                   timeout=timeout + 10))


def status(base: str, sid: str) -> dict:
    return ok(call(base, "GET", f"/get_status?sandbox_id={sid}"))


def stop_all(base: str, sids) -> None:
    for sid in sids:
        call(base, "POST", "/stop", {"sandbox_id": sid})


def wait_for(what: str, check, timeout: float = 15.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(every)


def nodes(base: str) -> dict[str, dict]:
    return {n["name"]: n for n in ok(call(base, "GET", "/cluster/status"))["nodes"]}


def test_every_process_sees_three_live_nodes(cluster):
    for proc in cluster.admins + cluster.proxies:
        seen = wait_for("all nodes joined", lambda: len(n := nodes(proc.url)) == 3 and n)
        assert all(n["live"] for n in seen.values())
        assert seen["n1"]["capacity"]["cpus"] == 4 and seen["n2"]["capacity"]["cpus"] == 2
        assert seen["n1"]["labels"] == {"zone": "a", "size": "large", "node": "n1"}
        assert seen["n2"]["backend"] == "bwrap"
    health = [p.health() for p in cluster.admins + cluster.proxies]
    assert {h["role"] for h in health} == {"admin", "proxy"} and {h["store"] for h in health} == {"postgresql"}
    assert {h["backend"] for h in health} == {"cluster"}


def test_cluster_status_command(cluster):
    import json
    import subprocess
    import sys

    def rock(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "rock.cli.main", *args, "cluster", "--url", cluster.proxies[0].url,
                               "status"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    data = json.loads(rock("--json"))
    assert data["mode"] == "cluster" and sorted(n["name"] for n in data["nodes"]) == ["n1", "n2", "n3"]
    table = rock().splitlines()  # piped: one tab-separated line per node
    assert table[0].split("\t")[:3] == ["node", "state", "backend"]
    rows = {line.split("\t")[0]: line.split("\t") for line in table[1:]}
    assert rows["n1"][1] == "live" and rows["n1"][3].endswith("/4") and "zone=a" in rows["n1"][-1]


def test_placement_by_resources_and_labels(cluster):
    admin = cluster.admins[0].url
    made = []
    try:
        # Labels: zone=b is n2 or n3, never n1; size=large only n1.
        for _ in range(4):
            made.append(start(admin, node_selector={"zone": "b"})["sandbox_id"])
        placed = {sid: status(admin, sid) for sid in made}
        assert {s["host_name"] for s in placed.values()}  # the node's host
        where = {sid: _node_of(cluster, sid) for sid in made}
        assert set(where.values()) == {"n2", "n3"}, where  # spread over both
        large = start(admin, node_selector={"size": "large"})["sandbox_id"]
        made.append(large)
        assert _node_of(cluster, large) == "n1"
        # Resources: 3 cpus fit only n1 (n2 and n3 have 2).
        big = start(admin, cpus=3)["sandbox_id"]
        made.append(big)
        assert _node_of(cluster, big) == "n1"
        # Each one runs commands over the direct data path, through either admin and both proxies.
        for base in [cluster.admins[1].url] + [p.url for p in cluster.proxies]:
            out = execute(base, big, "echo $ROCK_SANDBOX_ID; nproc")
            assert out["stdout"].split()[0].startswith(big[:8]) and out["exit_code"] == 0
        view = nodes(admin)
        assert view["n1"]["reserved"]["cpus"] >= 3.5  # large (0.5) + big (3), from n1's own report
        assert view["n1"]["sandbox_states"].get("running") == 2
    finally:
        stop_all(admin, made)


def _node_info(name: str) -> dict:
    import ray

    from rock.cluster.node import ACTOR_PREFIX, NAMESPACE

    return ray.get(ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE).info.remote(), timeout=30)


def test_stop_keeps_files_on_the_node_and_restart_brings_them_back(cluster):
    admin, other = cluster.admins[0].url, cluster.admins[1].url
    sid = start(admin)["sandbox_id"]
    try:
        node = _node_of(cluster, sid)
        assert execute(admin, sid, "echo kept > /root/mark && echo ok")["exit_code"] == 0
        ok(call(admin, "POST", "/stop", {"sandbox_id": sid}))
        assert status(admin, sid)["state"] == "stopped"
        info = _node_info(node)
        assert sid in info["stopped_ids"] and sid not in info["sandbox_ids"]  # kept, not running
        wait_for("the other admin sees it stopped", lambda: status(other, sid)["state"] == "stopped")
        ok(call(other, "POST", "/restart", {"sandbox_id": sid}))  # the other admin finds its node too
        assert _node_of(cluster, sid) == node and sid not in _node_info(node)["stopped_ids"]
        out = execute(admin, sid, "cat /root/mark")
        assert out["stdout"].strip() == "kept", out
    finally:
        ok(call(admin, "POST", "/delete", {"sandbox_id": sid}))
    info = _node_info(node)
    assert sid not in info["stopped_ids"] and sid not in info["sandbox_ids"]  # delete removed the files
    wait_for("every process sees it deleted", lambda: all(
        ok(call(p.url, "GET", f"/get_status?sandbox_id={sid}&include_all_states=true"))["lifecycle_state"] == "deleted"
        for p in cluster.admins + cluster.proxies))



def test_pause_snapshot_and_fork_on_a_node(cluster):
    """The ClusterWorker's calls: pause and resume on the sandbox's node, a snapshot kept there,
    a fork's children and a start from the snapshot on that node (where its files are)."""
    admin, other = cluster.admins[0].url, cluster.admins[1].url
    sid = start(admin)["sandbox_id"]
    made = [sid]
    name = None
    try:
        node = _node_of(cluster, sid)
        execute(admin, sid, "echo parent > /root/mark")
        assert ok(call(admin, "POST", f"/sandboxes/{sid}/pause"))["state"] == "paused"
        refused = call(admin, "POST", "/execute", {"sandbox_id": sid, "command": "true"})
        assert refused.status_code == 409 and "paused" in refused.json()["message"]
        ok(call(admin, "POST", f"/sandboxes/{sid}/resume"))
        name = ok(call(admin, "POST", f"/sandboxes/{sid}/snapshot", {"name": "on-a-node"}))["name"]
        assert name in [s["name"] for s in ok(call(other, "GET", "/snapshots"))]  # asked of every node
        kids = ok(call(admin, "POST", f"/sandboxes/{sid}/fork", {"count": 2}, timeout=300))["sandboxes"]
        made += [k["sandbox_id"] for k in kids]
        assert [k["state"] for k in kids] == ["running", "running"], kids
        for kid in kids:
            assert _node_of(cluster, kid["sandbox_id"]) == node
            assert execute(admin, kid["sandbox_id"], "cat /root/mark")["stdout"].strip() == "parent"
        child = ok(call(other, "POST", "/start", {"snapshot": name}, timeout=300))["sandbox_id"]  # the other admin
        made.append(child)
        assert _node_of(cluster, child) == node
        assert execute(other, child, "cat /root/mark")["stdout"].strip() == "parent"
    finally:
        for box in made:
            call(admin, "POST", "/delete", {"sandbox_id": box})
        if name:
            call(admin, "DELETE", f"/snapshots/{name}")
    assert name not in [s["name"] for s in ok(call(admin, "GET", "/snapshots"))]


def test_the_in_sandbox_model_service_command_reaches_the_cluster_admin(cluster):
    """``rock model-service`` inside a sandbox asks the admin through the agent's notices; on a
    cluster the admin's connection to the agent crosses the node's relay."""
    admin = cluster.admins[0].url
    sid = start(admin)["sandbox_id"]
    rock = "export PATH=/.rock/lib/rock_agent/bin:$PATH; rock model-service "
    try:
        out = execute(admin, sid, rock + "start --type local 2>&1")
        assert out["exit_code"] == 0 and "started (local) on port 8080" in out["stdout"], out
        health = execute(admin, sid, '"$ROCK_HOST_PYTHON" -c "import urllib.request as u; '
                                     'print(u.urlopen(\'http://127.0.0.1:8080/health\', timeout=10).status)"')
        assert health["stdout"].strip() == "200", health
        out = execute(admin, sid, rock + "stop 2>&1")
        assert out["exit_code"] == 0 and "stopped" in out["stdout"], out
    finally:
        call(admin, "POST", "/delete", {"sandbox_id": sid})


def _node_of(cluster, sid: str) -> str:
    for name in cluster.ray.ray_nodes:
        import ray

        from rock.cluster.node import ACTOR_PREFIX, NAMESPACE

        info = ray.get(ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE).info.remote(), timeout=30)
        if sid in info["sandbox_ids"]:
            return name
    raise AssertionError(f"sandbox {sid} runs on no node")


def test_admission_refusals_name_the_largest_node(cluster):
    admin = cluster.admins[0].url
    before = ok(call(cluster.proxies[0].url, "GET", "/sandboxes"))["total"]
    reply = call(admin, "POST", "/start", {"cpus": 64, "memory": "256m"})
    assert reply.status_code == 400
    message = reply.json()["message"]
    assert "64 cpus" in message and "largest node (n1) has 4 cpus" in message, message
    reply = call(admin, "POST", "/start", {"cpus": 1, "memory": "64g"})
    assert reply.status_code == 400 and "(n1) has 4.00 GiB memory" in reply.json()["message"], reply.text
    reply = call(admin, "POST", "/start", {"cpus": 1, "memory": "256m", "num_gpus": 1})
    assert reply.status_code == 400 and "no node has a GPU" in reply.json()["message"], reply.text
    reply = call(admin, "POST", "/start", {"cpus": 1, "num_gpus": 1, "accelerator_type": "A100"})
    assert reply.status_code == 400 and "accelerator_type=A100" in reply.json()["message"], reply.text
    reply = call(admin, "POST", "/start", {"cpus": 1, "num_gpus": 0.5})
    assert reply.status_code == 400 and "whole number" in reply.json()["message"], reply.text
    # Refused before anything was recorded: no record appears in any process.
    time.sleep(1.0)  # longer than a proxy takes to see a new record
    assert ok(call(cluster.proxies[0].url, "GET", "/sandboxes"))["total"] == before


def test_a_full_cluster_refuses_at_once_naming_the_limit(cluster):
    admin = cluster.admins[0].url
    made = []
    try:
        # Fill zone b (n2 + n3: 2 cpus each) with 4 one-cpu sandboxes.
        for _ in range(4):
            made.append(start(admin, cpus=1, node_selector={"zone": "b"})["sandbox_id"])
        # Refused at once, not held until its startup timeout (600 s, past the client's own wait).
        reply = call(admin, "POST", "/start", {"cpus": 1, "memory": "256m", "node_selector": {"zone": "b"},
                                               "startup_timeout": 600})
        assert reply.status_code == 503, reply.text
        message = reply.json()["message"]
        assert "no node with zone=b has room now for 1 cpus" in message and "its cpus" in message, message
        assert "free now: n" in message and "n2: " in message and "n3: " in message, message  # each node's room
        # The control: zone a still has room, and zone b has it again once one is stopped.
        made.append(start(admin, cpus=1, node_selector={"zone": "a"})["sandbox_id"])
        stop_all(admin, made[:1])

        def room_in_b() -> str | None:  # the node's next report (twice a second) gives the room back
            r = call(admin, "POST", "/start", {"memory": "256m", "cpus": 1, "auto_clear_seconds": 0,
                                               "node_selector": {"zone": "b"}})
            assert r.status_code in (200, 503), r.text
            return r.json()["result"]["sandbox_id"] if r.status_code == 200 else None

        made.append(wait_for("room in zone b after a stop", room_in_b, timeout=15, every=0.5))
        assert execute(admin, made[-1], "echo room-again")["stdout"].strip() == "room-again"
    finally:
        stop_all(admin, made)


def test_two_admins_and_two_proxies_share_one_postgres(cluster):
    a, b = (p.url for p in cluster.admins)
    p1, p2 = (p.url for p in cluster.proxies)
    sid = start(a, sandbox_id="shared-1")["sandbox_id"]
    try:
        # The proxies serve commands and files for a sandbox another process created.
        ok(call(p1, "POST", "/write_file", {"sandbox_id": sid, "path": "/tmp/f.txt", "content": "from p1"}))
        assert ok(call(p2, "POST", "/read_file", {"sandbox_id": sid, "path": "/tmp/f.txt"}))["content"] == "from p1"
        assert execute(p2, sid, "cat /tmp/f.txt")["stdout"] == "from p1"
        # Proxies are read-only: no create, no stop.
        assert call(p1, "POST", "/start", {"cpus": 0.5}).status_code in (404, 405)
        # The other admin stops it; every process sees it stopped.
        ok(call(b, "POST", "/stop", {"sandbox_id": sid}))
        for base in (a, p1, p2):
            wait_for(f"stopped seen by {base}", lambda: status(base, sid)["lifecycle_state"] == "stopped", timeout=5)
        reply = call(p1, "POST", "/execute", {"sandbox_id": sid, "command": "true"})
        assert reply.status_code == 409 and "stopped" in reply.json()["message"]
        history = [h["event"] for h in status(p2, sid)["state_history"]]
        assert history == ["create", "started", "stop"], history
    finally:
        call(b, "POST", "/stop", {"sandbox_id": sid})


def test_node_killed_mid_run_then_back(cluster):
    admin, proxy = cluster.admins[0].url, cluster.proxies[0].url
    made = []
    try:
        victim = start(admin, sandbox_id="on-n3", node_selector={"node": "n3"})["sandbox_id"]
        made.append(victim)
        assert _node_of(cluster, victim) == "n3"
        execute(admin, victim, "echo kept > /tmp/mark")
        # A long command is running on n3 when the node dies.
        result = {}
        runner = threading.Thread(target=lambda: result.update(
            reply=call(proxy, "POST", "/execute", {"sandbox_id": victim, "command": "sleep 60", "timeout": 90}, timeout=100)))
        runner.start()
        time.sleep(0.5)
        cluster.ray.kill("n3")
        runner.join(HEARTBEAT_TIMEOUT_S + 5)
        assert not runner.is_alive(), "the command on the dead node hung"
        assert result["reply"].status_code in (409, 410, 503), result["reply"].text
        # noticed within the heartbeat's timeout, not at the command's own (the bound, not a timing)
        for base in (admin, proxy):
            wait_for("node n3 lost", lambda: not nodes(base)["n3"]["live"], timeout=HEARTBEAT_TIMEOUT_S + 5)
        lost = wait_for("record lost", lambda: (s := status(admin, victim))["lifecycle_state"] == "lost" and s, timeout=10)
        assert "node n3 was lost" in lost["failure_reason"], lost
        # refused at once by the record, never sent to the dead node (a client bound, not a timing)
        reply = call(proxy, "POST", "/execute", {"sandbox_id": victim, "command": "true"}, timeout=10)
        assert reply.status_code == 409 and "n3" in reply.json()["message"], reply.text
        # New sandboxes go to live nodes.
        fresh = start(admin, node_selector={"zone": "b"})["sandbox_id"]
        made.append(fresh)
        assert _node_of(cluster, fresh) == "n2"
        # The node comes back: its worker re-attaches the sandbox, which runs again with its files.
        assert cluster.ray.revive("n3")["sandbox_ids"] == [victim]
        wait_for("sandbox re-attached", lambda: status(admin, victim)["lifecycle_state"] == "running", timeout=30)
        wait_for("proxy sees it running", lambda: status(proxy, victim)["lifecycle_state"] == "running", timeout=10)
        assert execute(proxy, victim, "cat /tmp/mark")["stdout"] == "kept\n"
        assert "reattached" in [h["event"] for h in status(admin, victim)["state_history"]]
    finally:
        stop_all(admin, made)


async def test_a_process_that_missed_a_nodes_return_attaches_it_when_a_running_record_sends_a_call_there(cluster):
    """A proxy's discovery runs a round behind an admin's: after a node came back, the sandbox's
    record (written by the admin that saw it first) says running while this process still has the
    node lost. A call there attaches the node now, once however many ask (CI saw a 409 "lost 4.1s
    ago" from a proxy right after the admin's "running")."""
    from rock.cluster.client import ClusterWorker
    from rock.config import Settings

    admin = cluster.admins[0].url
    sid = start(admin, node_selector={"node": "n1"})["sandbox_id"]
    backs: list[tuple[str, list[str]]] = []

    class Backs:
        async def node_back(self, name, sandbox_ids):
            backs.append((name, sandbox_ids))

        async def node_lost(self, name, reason):
            pass

    # Another admin-side view of the same Ray cluster, in this process, whose discovery never runs
    # on its own (not started): only what the test calls.
    worker = ClusterWorker(Settings(state_dir=cluster.ray.root / "view", cluster=cluster.ray.address))
    worker.listeners.append(Backs())
    try:
        await worker.nodes.discover()
        assert worker.node_live("n1")
        worker.nodes.mark_lost("n1", "missed by this process")
        assert not worker.node_live("n1")
        # control: this process's own view refuses it as lost
        with pytest.raises(SandboxNotRunning, match="n1, which was lost"):
            worker.capabilities(sid, "n1")
        agents = await asyncio.gather(worker.connect(sid, "n1"), worker.connect(sid, "n1"), worker.nodes.discover())
        assert worker.node_live("n1")
        assert agents[0] is agents[1]
        assert (await agents[0].exec("echo here")).stdout == "here\n"
        assert [name for name, _ in backs] == ["n1"] and sid in backs[0][1], backs  # once, not once per caller
        # a node whose worker is not up stays refused
        with pytest.raises(SandboxNotFound):
            await worker.connect("nowhere", "n9")
    finally:
        await worker.close()
        stop_all(admin, [sid])


def test_reaper_lease_moves_when_its_holder_dies(cluster):
    holders = wait_for("one reaper", lambda: (h := [p for p in cluster.admins if p.health()["reaper"]]) and h)
    assert len(holders) == 1
    assert not any(p.health()["reaper"] for p in cluster.proxies)
    holder = holders[0]
    other = next(p for p in cluster.admins if p is not holder)
    # An idle sandbox whose TTL only the reaper enforces.
    sid = start(other.url, auto_clear_seconds=2)["sandbox_id"]
    holder.kill()
    wait_for("the other admin holds the lease", lambda: other.health()["reaper"], timeout=12)
    wait_for("idle sandbox reaped by the new holder",
             lambda: status(other.url, sid)["lifecycle_state"] == "stopped", timeout=15)
    assert [h["event"] for h in status(other.url, sid)["state_history"]][-1] == "idle_timeout"
    holder.start().wait_ready()  # back for whatever runs after
