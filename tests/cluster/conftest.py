"""One cluster for the module that needs it: PostgreSQL, three Ray nodes each with its own worker,
two admins and two proxies sharing the database. Started once (in parallel where they can),
stopped at the end with every sandbox they made."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.admin.harness import free_port
from tests.cluster.infra import AdminProc, Postgres, ray_cluster
from tests.conftest import SESSION_ROOT


@pytest.fixture(scope="session")
def postgres():
    # Its own directory, not under the session's (mode 0700, root's): the server runs as ``postgres``.
    pg = Postgres(Path(tempfile.mkdtemp(prefix="rock-pg-")), free_port()).start()
    yield pg
    pg.stop()


class Env:
    def __init__(self, ray, pg: Postgres, admins: list[AdminProc], proxies: list[AdminProc]):
        self.ray, self.pg, self.admins, self.proxies = ray, pg, admins, proxies


@pytest.fixture(scope="module")
def cluster(postgres):
    ray = ray_cluster(SESSION_ROOT / "ray")
    procs: list[AdminProc] = []
    try:
        ray.start()
        common = {"cluster": ray.address, "store_url": postgres.url}
        admins = [AdminProc(SESSION_ROOT / "adm", free_port(), "admin", **common) for _ in range(2)]
        proxies = [AdminProc(SESSION_ROOT / "adm", free_port(), "proxy", **common) for _ in range(2)]
        procs = admins + proxies
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready()
        yield Env(ray, postgres, admins, proxies)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.stop()
        ray.stop()
