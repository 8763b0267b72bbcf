"""A real cluster whose nodes run different backends (g1: gVisor, b1: bwrap), one admin: a full
snapshot and a full fork of a sandbox on the gVisor node are taken (the child goes on with the
parent's shell and its variables), and refused with a 400 naming the node on the bwrap node.

Its own small Ray cluster (two nodes) on free ports, stopped at the module's end."""

from __future__ import annotations

import httpx
import pytest

from rock.cluster.localray import LocalRay
from tests.admin.harness import free_port
from tests.cluster.infra import AdminProc
from tests.conftest import SESSION_ROOT

pytestmark = [pytest.mark.ray, pytest.mark.bwrap, pytest.mark.gvisor]
API = "/apis/envs/sandbox/v1"
NODES = {"g1": {"num_cpus": 2, "memory": 2 << 30, "backend": "gvisor"},
         "b1": {"num_cpus": 2, "memory": 2 << 30, "backend": "bwrap"}}


@pytest.fixture(scope="module")
def admin(postgres):
    ray = LocalRay(SESSION_ROOT / "ray-gvisor", free_port(), NODES)
    proc = None
    try:
        ray.start()
        proc = AdminProc(SESSION_ROOT / "adm-gvisor", free_port(), "admin", cluster=ray.address,
                         store_url=postgres.url).start()
        proc.wait_ready()
        yield proc.url
    finally:
        if proc is not None:
            proc.terminate()
            proc.stop()
        ray.stop()


def call(base: str, path: str, body: dict | None = None, timeout: float = 300) -> httpx.Response:
    return httpx.post(base + API + path, json=body, timeout=timeout)


def ok(reply: httpx.Response):
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]


def shell(base: str, sid: str, command: str) -> str:
    return ok(call(base, "/run_in_session", {"sandbox_id": sid, "session": "default", "command": command}))["output"]


def test_full_snapshots_and_forks_are_taken_on_the_gvisor_node_and_refused_on_the_bwrap_node(admin):
    made, snaps = [], []
    try:
        on = {}
        for node in NODES:
            on[node] = ok(call(admin, "/start", {"memory": "256m", "cpus": 0.5, "auto_clear_seconds": 0,
                                                 "node_selector": {"node": node}}))["sandbox_id"]
            made.append(on[node])
        shell(admin, on["g1"], "export COUNTER=41; COUNTER=$((COUNTER + 1))")
        snap = ok(call(admin, f"/sandboxes/{on['g1']}/snapshot", {"mode": "full"}))
        snaps.append(snap["name"])
        assert snap["mode"] == "full"
        [kid] = ok(call(admin, f"/sandboxes/{on['g1']}/fork", {"count": 1, "mode": "full"}))["sandboxes"]
        made.append(kid["sandbox_id"])
        assert kid["state"] == "running", kid
        assert shell(admin, kid["sandbox_id"], "echo $COUNTER") == "42"  # the parent's shell, memory and all
        for path, body in ((f"/sandboxes/{on['b1']}/snapshot", {"mode": "full"}),
                           (f"/sandboxes/{on['b1']}/fork", {"count": 1, "mode": "full"})):
            refused = call(admin, path, body)
            assert refused.status_code == 400, refused.text
            assert "the bwrap backend of node b1" in refused.text and "only gvisor can" in refused.text
        snaps.append(ok(call(admin, f"/sandboxes/{on['b1']}/snapshot", {"mode": "filesystem"}))["name"])  # any node
    finally:
        for sid in made:
            call(admin, "/delete", {"sandbox_id": sid})
        for name in snaps:
            httpx.delete(f"{admin}{API}/snapshots/{name}", timeout=300)
