"""Red-team fixtures: one real admin per backend with two tenants (two tokens), and raw HTTP
clients for each, so an attempt is made exactly as an attacker would send it.

Every test here makes an attempt and asserts what must not happen (a marker never appears, a
secret never comes back, memory stays bounded) AND a control in the same test that shows the
attempt ran (the honest request succeeds, the marker is found where it is allowed)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from rock.admin.context import PREFIX
from tests.admin.harness import Admin, backend_params

TOKEN_A, TOKEN_B = "sec-token-alice", "sec-token-bob"
TOKENS = {TOKEN_A: "alice", TOKEN_B: "bob"}


@pytest.fixture(scope="session", params=backend_params())
def tenants(request):
    """An admin with tokens for two namespaces (alice, bob) and E2B's ``base`` template."""
    server = Admin(request.param, tokens=TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


def rock(admin: Admin, token: str) -> httpx.Client:
    """ROCK's routes as the holder of ``token``."""
    return httpx.Client(base_url=admin.url + PREFIX, headers={"Authorization": f"Bearer {token}"}, timeout=300)


def start(client: httpx.Client, **body) -> str:
    r = client.post("/start", json={"memory": "1g", "cpus": 1, **body})
    assert r.status_code == 200, r.text
    return r.json()["result"]["sandbox_id"]


def execute(client: httpx.Client, sandbox_id: str, command: str) -> dict:
    r = client.post("/execute", json={"sandbox_id": sandbox_id, "command": command, "timeout": 120})
    assert r.status_code == 200, r.text
    return r.json()["result"]


class PeakRss:
    """This process's peak resident memory while the block runs (the admin under test serves
    from a thread of this process), sampled every 5 ms: ``with PeakRss() as peak: ...; peak.growth``."""

    def __init__(self):
        self.base = self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def __enter__(self):
        self.base = self.peak = self.now()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def world(tenants):
    """Alice's objects on the tenants' admin, one set per backend for every tenant test
    (tests/security/tenants.py)."""
    from tests.security.tenants import make_world

    yield from make_world(tenants)
