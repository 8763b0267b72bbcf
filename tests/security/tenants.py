"""Shared parts of the tenant red-team tests (test_tenants.py, test_tenants_envs.py): alice's
objects on one admin, bob's and alice's clients, and the check that bob's request for alice's
object is answered exactly like one for an id nobody has."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from rock.admin.context import PREFIX
from tests.admin.harness import Admin
from tests.security.conftest import TOKEN_A, TOKEN_B, execute, rock, start

SECRET = "alice-secret-" + uuid.uuid4().hex[:8]
GEM = "/apis/v1/envs/gem"
GYM = "/apis/v1/envs/gym"
CHAT = "/apis/v1/chat"
TRAINING = "/apis/v1/training"
# A server in alice's sandbox that serves her secret on a port (the port proxy's target).
SERVE = "mkdir -p /tmp/www && cp /tmp/secret /tmp/www/s && cd /tmp/www && exec python3 -m http.server 8000"


@dataclass
class World:
    """Alice's objects on one admin, and a client per tenant for each door."""
    admin: Admin
    alice: httpx.Client  # the admin's root, alice's token (Authorization and X-API-KEY)
    bob: httpx.Client
    sid: str  # alice's ROCK sandbox: /tmp/secret holds SECRET, a server on port 8000 serves it
    e2b: dict  # alice's E2B sandbox (sandboxID, envdAccessToken); /tmp/secret holds SECRET
    bobs_e2b: dict  # bob's own E2B sandbox: his envd token is real, just not alice's
    env: str  # alice's GEM env handle
    instance: str  # alice's training instance
    gym: str  # alice's gym session (a dedicated env sandbox)
    vec: str  # alice's vector env

    def ids(self) -> list[str]:
        return [self.sid, self.e2b["sandboxID"], self.env, self.instance, self.gym, self.vec]


def client(admin: Admin, token: str) -> httpx.Client:
    return httpx.Client(base_url=admin.url, timeout=300,
                        headers={"Authorization": f"Bearer {token}", "X-API-KEY": token})


def make_world(tenants):
    """Alice's objects on ``tenants`` (a generator: the fixture's body; everything made is deleted)."""
    alice, bob = client(tenants, TOKEN_A), client(tenants, TOKEN_B)
    made: list[tuple[httpx.Client, str]] = []
    try:
        with rock(tenants, TOKEN_A) as a:
            sid = start(a)
            made.append((alice, sid))
            execute(a, sid, f"printf {SECRET} > /tmp/secret")
            r = a.post("/procs/start", json={"sandbox_id": sid, "command": SERVE})
            assert r.status_code == 200, r.text
        boxes = []
        for who in (alice, bob):
            r = who.post("/v2/sandboxes", json={"templateID": "base", "timeout": 900})
            assert r.status_code == 201, r.text
            boxes.append(r.json())
            made.append((who, r.json()["sandboxID"]))
        with rock(tenants, TOKEN_A) as a:
            execute(a, boxes[0]["sandboxID"], f"printf {SECRET} > /tmp/secret")
        r = alice.post(GEM + "/make", json={"env_id": "game:GuessTheNumber-v0-easy"})
        assert r.status_code == 200, r.text
        env = r.json()["sandbox_id"]
        instance = uuid.uuid4().hex
        r = alice.post(TRAINING + "/create", json={"env_type": "humaneval", "task_id": "HumanEval/100",
                                                   "instance_id": instance})
        assert r.status_code == 200, r.text
        r = alice.post(CHAT + "/start", json={"sandbox_id": sid})
        assert r.status_code == 200, r.text
        r = alice.post(GYM + "/sessions", json={"source": "CartPole-v1", "num_envs": 1, "lease": 3600})
        assert r.status_code == 200, r.text
        gym = r.json()["session_id"]
        made.append((alice, r.json()["sandbox_id"]))
        r = alice.post(GEM + "/vec/make", json={"env_id": "game:GuessTheNumber-v0-easy", "num_envs": 2})
        assert r.status_code == 200, r.text
        vec = r.json()["vec_id"]
        yield World(tenants, alice, bob, sid, boxes[0], boxes[1], env, instance, gym, vec)
    finally:
        for who, box in made:
            who.post(PREFIX + "/delete", json={"sandbox_id": box})
        alice.close()
        bob.close()


HEX = r"[0-9a-f]{8,}"


def fresh_id(like: str) -> str:
    """An id of the same shape as ``like`` (its hex runs replaced) that nobody has."""
    return re.sub(HEX, lambda m: secrets.token_hex(len(m.group()))[:len(m.group())], like)


def unknown_alike(send: Callable[[str], httpx.Response], real: str, statuses=(404, 502)) -> httpx.Response:
    """``send(real)`` by bob answers exactly as ``send`` of an id nobody has: same status, same
    body once the id is swapped; never with alice's secret. Returns bob's answer."""
    fake = fresh_id(real)
    theirs, nobodys = send(real), send(fake)
    swapped = theirs.text.replace(real, fake)
    for mine, other in zip(re.findall(HEX, real), re.findall(HEX, fake)):  # a part of the id alone
        swapped = swapped.replace(mine, other)
    assert SECRET not in theirs.text, theirs.text
    assert theirs.status_code == nobodys.status_code, (real, theirs.status_code, theirs.text, nobodys.text)
    assert theirs.status_code in statuses, (theirs.status_code, theirs.text)  # E2B's envd says 502 "not found"
    assert swapped == nobodys.text, (theirs.text, nobodys.text)
    return theirs


def ok(r: httpx.Response, *expect: str) -> httpx.Response:
    assert r.status_code in (200, 201, 204), (r.request.url, r.status_code, r.text[:500])
    for text in expect:
        assert text in r.text, (text, r.text[:500])
    return r


def req(method: str, path: str, body: dict | None = None, **kw):
    """A request builder: POST/PUT bodies as JSON, GET/DELETE arguments as the query."""
    def send(who: httpx.Client, **fill) -> httpx.Response:
        filled = {k: (v.format(**fill) if isinstance(v, str) else v) for k, v in (body or {}).items()}
        where = {"json": filled} if method in ("POST", "PUT") else {"params": filled}
        return who.request(method, path.format(**fill), **where, **kw)
    return send

