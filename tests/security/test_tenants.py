"""Tenants apart on every door: bob (one token) reaching for alice's (another token's) objects.

Each attempt is bob's request naming one of alice's objects (a sandbox, an E2B sandbox and its
envd, a Chat endpoint, a GEM env, a training instance, a port, a UI page, a metrics scrape, the
proxy role's data plane). It asserts what must not happen: the answer is exactly the answer for
an id nobody has (same status, same body with the id swapped), alice's secret never comes back,
nothing of alice's changes; AND, in the same test, a control: alice's honest request for the same
object succeeds (her secret is there to be found), so an attempt cannot pass by not reaching.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
import websockets

from rock.admin.context import PREFIX
from tests.admin.harness import Admin
from tests.security.conftest import TOKEN_A, TOKEN_B, TOKENS, execute, rock, start, wait_for

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


@pytest.fixture(scope="module")
def world(tenants):
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


# -- ROCK API: alice's sandbox by id, for bob exactly like a missing one -----------------------

ROCK_READS = {
    "get_status": (req("GET", PREFIX + "/get_status", {"sandbox_id": "{sid}"}), ()),
    "is_alive": (req("GET", PREFIX + "/is_alive", {"sandbox_id": "{sid}"}), ()),
    "statistics": (req("GET", PREFIX + "/get_sandbox_statistics", {"sandbox_id": "{sid}"}), ()),
    "execute": (req("POST", PREFIX + "/execute", {"sandbox_id": "{sid}", "command": "cat /tmp/secret"}), (SECRET,)),
    "run_in_session": (req("POST", PREFIX + "/run_in_session",
                           {"sandbox_id": "{sid}", "session": "default", "command": "cat /tmp/secret"}), (SECRET,)),
    "sessions": (req("GET", PREFIX + "/sessions", {"sandbox_id": "{sid}"}), ()),
    "read_file": (req("POST", PREFIX + "/read_file", {"sandbox_id": "{sid}", "path": "/tmp/secret"}), (SECRET,)),
    "files_read": (req("GET", PREFIX + "/files/read", {"sandbox_id": "{sid}", "path": "/tmp/secret"}), (SECRET,)),
    "files_stat": (req("GET", PREFIX + "/files/stat", {"sandbox_id": "{sid}", "path": "/tmp/secret"}), ()),
    "files_list": (req("GET", PREFIX + "/files/list", {"sandbox_id": "{sid}", "path": "/tmp"}), ("secret",)),
    "files_download": (req("GET", PREFIX + "/files/download", {"sandbox_id": "{sid}", "path": "/tmp/secret"}),
                       (SECRET,)),
    "procs": (req("GET", PREFIX + "/procs", {"sandbox_id": "{sid}"}), ("http.server",)),
    "history": (req("GET", PREFIX + "/sandboxes/{sid}/history"), ()),
    # the port proxy: alice's server on port 8000 serves her secret
    "port_proxy": (req("GET", PREFIX + "/sandboxes/{sid}/proxy/port/8000/s"), (SECRET,)),
    "port_proxy_query": (req("GET", PREFIX + "/sandboxes/{sid}/proxy/s", {"rock_target_port": "8000"}), (SECRET,)),
    # the Chat protocol's trainer API on alice's endpoint
    "chat_status": (req("GET", CHAT + "/status", {"sandbox_id": "{sid}"}), ()),
    "chat_trajectory": (req("GET", CHAT + "/trajectory", {"sandbox_id": "{sid}"}), ()),
    # UI pages (a browser's cookie carries the token; these clients send the header, read alike)
    "ui_page": (req("GET", "/ui/sandboxes/{sid}"), ()),
    "ui_fragment": (req("GET", "/ui/fragments/sandbox/{sid}"), ()),
    "ui_files": (req("GET", "/ui/fragments/files/{sid}", {"path": "/tmp"}), ("secret",)),
    "ui_download": (req("GET", "/ui/sandboxes/{sid}/download", {"path": "/tmp/secret"}), (SECRET,)),
}


@pytest.mark.parametrize("name", sorted(ROCK_READS))
def test_reading_another_tenants_sandbox_is_reading_a_missing_one(world, name):
    send, shows = ROCK_READS[name]
    unknown_alike(lambda sid: send(world.bob, sid=sid), world.sid)
    ok(send(world.alice, sid=world.sid), *shows)  # control: alice reads her own


ROCK_WRITES = {
    # (bob's write, alice's proof it did not land: her secret is intact)
    "write_file": req("POST", PREFIX + "/write_file", {"sandbox_id": "{sid}", "path": "/tmp/secret", "content": "bob"}),
    "create_session": req("POST", PREFIX + "/create_session", {"sandbox_id": "{sid}", "session": "bobs"}),
    "close_session": req("POST", PREFIX + "/close_session", {"sandbox_id": "{sid}", "session": "default"}),
    "send_input": req("POST", PREFIX + "/send_input", {"sandbox_id": "{sid}", "session": "default", "data": "x"}),
    "procs_start": req("POST", PREFIX + "/procs/start", {"sandbox_id": "{sid}", "command": "printf bob > /tmp/secret"}),
    "commit": req("POST", PREFIX + "/commit", {"sandbox_id": "{sid}", "image_tag": "bob-took:1"}),
    "commit_status": req("GET", PREFIX + "/commit/{sid}"),
    "restart": req("POST", PREFIX + "/sandboxes/{sid}/restart"),
    "archive": req("POST", PREFIX + "/sandboxes/{sid}/archive"),
    "stop": req("POST", PREFIX + "/stop", {"sandbox_id": "{sid}"}),
    "delete": req("POST", PREFIX + "/delete", {"sandbox_id": "{sid}"}),
    "chat_start": req("POST", CHAT + "/start", {"sandbox_id": "{sid}"}),
    "chat_stop": req("POST", CHAT + "/stop", {"sandbox_id": "{sid}"}),
    "chat_answer": req("POST", CHAT + "/answer", {"sandbox_id": "{sid}", "index": 1,
                                                  "response": {"choices": [{"message": {"role": "assistant",
                                                                                        "content": "bob"}}]}}),
    "ui_stop": req("POST", "/ui/sandboxes/{sid}/stop"),
    "ui_delete": req("POST", "/ui/sandboxes/{sid}/delete"),
}


def _files_write(who: httpx.Client, sid: str) -> httpx.Response:
    return who.put(PREFIX + "/files/write", params={"sandbox_id": sid, "path": "/tmp/secret"}, content=b"bob")


def _upload(who: httpx.Client, sid: str) -> httpx.Response:
    return who.post(PREFIX + "/upload", data={"sandbox_id": sid, "target_path": "/tmp/secret"},
                    files={"file": ("f", b"bob")})


def _ui_upload(who: httpx.Client, sid: str) -> httpx.Response:
    return who.post(f"/ui/sandboxes/{sid}/upload", data={"path": "/tmp"}, files={"file": ("secret", b"bob")})


WRITERS = {**{k: (lambda v: lambda who, sid: v(who, sid=sid))(v) for k, v in ROCK_WRITES.items()},
           "files_write": _files_write, "upload": _upload, "ui_upload": _ui_upload}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_changing_another_tenants_sandbox_is_changing_a_missing_one(world, name):
    send = WRITERS[name]
    unknown_alike(lambda sid: send(world.bob, sid), world.sid)
    # control: alice's sandbox is untouched, running, her endpoint and server still up
    with rock(world.admin, TOKEN_A) as a:
        assert execute(a, world.sid, "cat /tmp/secret")["stdout"] == SECRET
    ok(world.alice.get(PREFIX + "/get_status", params={"sandbox_id": world.sid}), '"is_alive":true')
    ok(world.alice.get(CHAT + "/status", params={"sandbox_id": world.sid}))
    ok(world.alice.get(PREFIX + f"/sandboxes/{world.sid}/proxy/port/8000/s"), SECRET)


def test_another_tenants_sandboxes_are_never_listed(world):
    ids = world.ids()
    for path, params in ((PREFIX + "/sandboxes", {}), ("/v2/sandboxes", {}), ("/sandboxes", {}), (GYM + "/sessions", {}),
                         (GEM + "/hosted", {}), (TRAINING + "/instances", {}), ("/snapshots", {}),
                         ("/ui/sandboxes", {}), ("/ui/fragments/sandboxes", {}), ("/ui/fragments/overview", {}),
                         ("/ui/envs", {}), ("/", {})):
        r = ok(world.bob.get(path, params=params))
        assert not [i for i in ids if i.split(":")[0] in r.text], (path, r.text[:1000])
    boxes = [world.sid, world.e2b["sandboxID"], world.env.split(":")[0]]
    r = ok(world.bob.post(PREFIX + "/sandboxes/batch", json={"sandbox_ids": boxes}))
    assert r.json()["result"]["statuses"] == []
    # control: alice's listings show hers
    assert world.sid in ok(world.alice.get(PREFIX + "/sandboxes")).text
    assert world.e2b["sandboxID"] in ok(world.alice.get("/v2/sandboxes")).text
    assert world.env.split(":")[0] in ok(world.alice.get(GEM + "/hosted")).text
    assert world.instance in ok(world.alice.get(TRAINING + "/instances")).text
    assert world.gym in ok(world.alice.get(GYM + "/sessions")).text
    assert world.sid in ok(world.alice.get("/ui/fragments/sandboxes")).text
    assert len(ok(world.alice.post(PREFIX + "/sandboxes/batch", json={"sandbox_ids": boxes})).json()["result"]["statuses"]) == 3


def test_metrics_never_name_another_tenants_objects(world):
    bobs = ok(world.bob.get("/metrics")).text
    for i in world.ids() + [world.bobs_e2b["sandboxID"], "alice", "bob"]:
        assert i.split(":")[0] not in bobs, i
    # control: the scrape counts alice's running sandboxes (it reads the same records, by state)
    running = [line for line in bobs.splitlines() if line.startswith("rock_sandboxes{") and 'state="running"' in line]
    assert running and sum(float(line.rsplit(" ", 1)[1]) for line in running) >= 3, bobs[:2000]


# -- E2B: the control plane by X-API-KEY, envd by the sandbox's access token ------------------

E2B_CONTROL = {
    "info": req("GET", "/sandboxes/{sid}"),
    "connect": req("POST", "/sandboxes/{sid}/connect", {"timeout": 600}),
    "connect_v2": req("POST", "/v2/sandboxes/{sid}/connect", {"timeout": 600}),
    "timeout": req("POST", "/sandboxes/{sid}/timeout", {"timeout": 5}),
    "refresh": req("POST", "/sandboxes/{sid}/refreshes"),
    "metrics": req("GET", "/sandboxes/{sid}/metrics"),
    "kill": req("DELETE", "/sandboxes/{sid}"),
}


@pytest.mark.parametrize("name", sorted(E2B_CONTROL))
def test_the_e2b_control_plane_answers_another_tenants_sandbox_as_missing(world, name):
    send = E2B_CONTROL[name]
    box = world.e2b["sandboxID"]
    unknown_alike(lambda sid: send(world.bob, sid=sid), box)
    r = ok(world.alice.get(f"/sandboxes/{box}"), box)  # control: alive, hers, and its end not moved by bob
    assert r.json()["state"] == "running"
    ok(send(world.alice, sid=box) if name in ("info", "connect", "metrics", "refresh") else r)


ENVD = {
    "files_get": lambda c, box, tok: c.get("/files", params={"path": "/tmp/secret"},
                                           headers={"E2b-Sandbox-Id": box, "X-Access-Token": tok}),
    "files_post": lambda c, box, tok, data=b"bob": c.post("/files", params={"path": "/tmp/secret"}, content=data,
                                             headers={"E2b-Sandbox-Id": box, "X-Access-Token": tok,
                                                      "content-type": "application/octet-stream"}),
    "fs_stat": lambda c, box, tok: c.post("/filesystem.Filesystem/Stat", json={"path": "/tmp/secret"},
                                          headers={"E2b-Sandbox-Id": box, "X-Access-Token": tok,
                                                   "Connect-Protocol-Version": "1"}),
    "fs_list": lambda c, box, tok: c.post("/filesystem.Filesystem/ListDir", json={"path": "/tmp"},
                                          headers={"E2b-Sandbox-Id": box, "X-Access-Token": tok,
                                                   "Connect-Protocol-Version": "1"}),
    "process_list": lambda c, box, tok: c.post("/process.Process/List", json={},
                                               headers={"E2b-Sandbox-Id": box, "X-Access-Token": tok,
                                                        "Connect-Protocol-Version": "1"}),
}


@pytest.mark.parametrize("name", sorted(ENVD))
def test_envd_with_another_sandboxs_access_token_reaches_nothing(world, name):
    send, box = ENVD[name], world.e2b["sandboxID"]
    # bob holds a real access token (his own sandbox's) and names alice's sandbox
    unknown_alike(lambda sid: send(world.bob, sid, world.bobs_e2b["envdAccessToken"]), box)
    # and with no sandbox named, his token leads to his own sandbox, never hers
    r = world.bob.post("/filesystem.Filesystem/Stat", json={"path": "/tmp/secret"},
                       headers={"X-Access-Token": world.bobs_e2b["envdAccessToken"], "Connect-Protocol-Version": "1"})
    assert SECRET not in r.text and r.status_code != 200, r.text
    # control: alice's token reads her sandbox; her secret is intact
    if name == "files_post":  # alice writes what was there, so the file still holds her secret
        ok(send(world.alice, box, world.e2b["envdAccessToken"], SECRET.encode()))
    else:
        ok(send(world.alice, box, world.e2b["envdAccessToken"]))
    got = ok(world.alice.get("/files", params={"path": "/tmp/secret"},
                             headers={"E2b-Sandbox-Id": box, "X-Access-Token": world.e2b["envdAccessToken"]}))
    assert got.text == SECRET


# -- GEM envs and training instances by handle ------------------------------------------------

HANDLES = {
    "gem_reset": (req("POST", GEM + "/reset", {"sandbox_id": "{sid}", "seed": 1}), "env"),
    "gem_step": (req("POST", GEM + "/step", {"sandbox_id": "{sid}", "action": "\\boxed{{5}}"}), "env"),
    "gem_close": (req("POST", GEM + "/close", {"sandbox_id": "{sid}"}), "env"),  # closing a missing env: 200, false
    "vec_reset": (req("POST", GEM + "/vec/reset", {"vec_id": "{sid}", "seed": 1}), "vec"),
    "vec_step": (req("POST", GEM + "/vec/step", {"vec_id": "{sid}", "actions": ["x", "y"]}), "vec"),
    "vec_close": (req("POST", GEM + "/vec/close", {"vec_id": "{sid}"}), "vec"),
    "training_info": (req("POST", TRAINING + "/info", {"instance_id": "{sid}"}), "instance"),
    "training_step": (req("POST", TRAINING + "/step", {"instance_id": "{sid}", "action": {"content": "x"}}), "instance"),
    "training_evaluate": (req("POST", TRAINING + "/evaluate", {"instance_id": "{sid}"}), "instance"),
    "training_release": (req("POST", TRAINING + "/release", {"instance_id": "{sid}"}), "instance"),
    "agentscope_info": (req("POST", TRAINING + "/agentscope/get_info", {"instance_id": "{sid}"}), "instance"),
    "agentscope_release": (req("POST", TRAINING + "/agentscope/release", {"instance_id": "{sid}"}), "instance"),
}


@pytest.mark.parametrize("name", sorted(HANDLES))
def test_another_tenants_env_or_instance_is_a_missing_one(world, name):
    send, kind = HANDLES[name]
    handle = getattr(world, kind)
    theirs = send(world.bob, sid=handle)
    nobodys = send(world.bob, sid=fresh_id(handle))
    if name.startswith("agentscope"):  # AgentScope's own shape: 200 with success false
        assert theirs.json()["success"] is False and nobodys.json()["success"] is False
    unknown_alike(lambda h: send(world.bob, sid=h), handle, (200,) if name == "gem_close" else (404,))
    # control: alice's handle works (an env's reset, the instance's info) and is still hers: her env
    # host still lists it (bob's call left its record alone), her instance still answers
    if kind == "env":
        ok(world.alice.post(GEM + "/reset", json={"sandbox_id": handle, "seed": 1}))
        assert handle in ok(world.alice.get(GEM + "/hosted")).text
    elif kind == "vec":
        ok(world.alice.post(GEM + "/vec/reset", json={"vec_id": handle, "seed": 1}))
        ok(world.alice.post(GEM + "/vec/step", json={"vec_id": handle, "actions": ["\\boxed{1}", "\\boxed{2}"]}))
    else:
        ok(world.alice.post(TRAINING + "/info", json={"instance_id": handle}), "HumanEval/100")
        assert handle in ok(world.alice.get(TRAINING + "/instances")).text


# -- gym sessions by id (a dedicated env sandbox each), also through GEM's door by handle -------

GYM_CALLS = {
    "reset": lambda who, sid: who.post(f"{GYM}/sessions/{sid}/reset", json={"seed": 1}),
    "step": lambda who, sid: who.post(f"{GYM}/sessions/{sid}/step", content=b"1",
                                      headers={"content-type": "application/octet-stream"}),
    "render": lambda who, sid: who.get(f"{GYM}/sessions/{sid}/render"),
    "keepalive": lambda who, sid: who.post(f"{GYM}/sessions/{sid}/keepalive"),
    "close": lambda who, sid: who.delete(f"{GYM}/sessions/{sid}"),
    # GEM's door takes a gym session's id as an env handle: its close stopped the session's
    # dedicated sandbox before it asked whose it was
    "gem_close": lambda who, sid: who.post(GEM + "/close", json={"sandbox_id": sid}),
    "gem_reset": lambda who, sid: who.post(GEM + "/reset", json={"sandbox_id": sid, "seed": 1}),
}


@pytest.mark.parametrize("name", sorted(GYM_CALLS))
def test_another_tenants_gym_session_is_a_missing_one(world, name):
    unknown_alike(lambda sid: GYM_CALLS[name](world.bob, sid), world.gym,
                  (200,) if name == "gem_close" else (404,))
    # control: alice's session still answers, its sandbox running
    ok(world.alice.post(f"{GYM}/sessions/{world.gym}/reset", json={"seed": 1}))
    assert world.gym in ok(world.alice.get(GYM + "/sessions")).text


# -- the proxy role: the data plane only, and another tenant's sandbox is missing there too -----

@pytest.fixture(scope="module")
def proxy(tenants):
    server = Admin(tenants.backend, state_dir=tenants.state_dir, role="proxy", tokens=TOKENS).start()
    yield server
    server.stop()


PROXIED = {
    "execute": (req("POST", PREFIX + "/execute", {"sandbox_id": "{sid}", "command": "cat /tmp/secret"}), "sid", SECRET),
    "files_read": (req("GET", PREFIX + "/files/read", {"sandbox_id": "{sid}", "path": "/tmp/secret"}), "sid", SECRET),
    "port": (req("GET", PREFIX + "/sandboxes/{sid}/proxy/port/8000/s"), "sid", SECRET),
    "gem_reset": (req("POST", GEM + "/reset", {"sandbox_id": "{sid}", "seed": 1}), "env", ""),
}


@pytest.mark.parametrize("name", sorted(PROXIED))
def test_through_a_proxy_another_tenants_objects_are_missing(world, proxy, name):
    send, kind, shows = PROXIED[name]
    target = getattr(world, kind)
    with client(proxy, TOKEN_B) as bob, client(proxy, TOKEN_A) as alice:
        unknown_alike(lambda sid: send(bob, sid=sid), target)
        ok(send(alice, sid=target), *([shows] if shows else []))  # control: alice through the proxy
    assert not (set(p.stem for p in (world.admin.state_dir / "records").glob("*.json")) - set(world.ids())
                - {world.bobs_e2b["sandboxID"], world.env.split(":")[0]} - _live(world.admin))


def _live(admin: Admin) -> set[str]:
    return {info.sandbox_id for info in admin.ctx.worker.list()} | set(admin.ctx.worker.stopped_ids())


# -- the Chat protocol's exchange and the in-sandbox endpoint ---------------------------------

CALL = ('import json, urllib.request; print(urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080/v1/chat/'
        'completions", json.dumps({"messages": [{"role": "user", "content": "%s"}]}).encode(), '
        '{"content-type": "application/json"}), timeout=60).read().decode())')


def test_the_exchange_never_hands_another_tenants_calls_and_the_endpoint_is_its_sandboxs_alone(world):
    with rock(world.admin, TOKEN_A) as a, rock(world.admin, TOKEN_B) as b:
        bobs = start(b)
        try:
            # bob's sandbox dials the endpoint's address: it is alice's sandbox's loopback, not his
            out = execute(b, bobs, "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8080/"
                                   "v1/models\", timeout=5).read())' 2>&1")
            assert SECRET not in out["stdout"] and "Connection refused" in out["stdout"], out
            r = a.post("/write_file", json={"sandbox_id": world.sid, "path": "/tmp/call.py",
                                            "content": CALL % SECRET})
            assert r.status_code == 200, r.text
            r = a.post("/procs/start", json={"sandbox_id": world.sid, "command": "python3 /tmp/call.py > /tmp/reply"})
            assert r.status_code == 200, r.text
            # bob's exchange waits and gets nothing of alice's
            r = ok(world.bob.post(CHAT + "/exchange", json={"wait": 2}))
            assert SECRET not in r.text and r.json()["result"]["calls"] == [], r.text
            # control: alice's exchange gets her sandbox's call, and her answer reaches it
            got = ok(world.alice.post(CHAT + "/exchange", json={"wait": 60, "sandbox_ids": [world.sid]}), SECRET)
            call = got.json()["result"]["calls"][0]
            # bob answers alice's call by its sandbox id and index: refused as unknown
            reply = {"choices": [{"message": {"role": "assistant", "content": "bob was here"}}]}
            late = ok(world.bob.post(CHAT + "/exchange", json={"wait": 0, "answers": [
                {"sandbox_id": world.sid, "index": call["index"], "response": reply}]}))
            assert late.json()["result"]["rejected"][0]["status"] == 404, late.text
            mine = {"choices": [{"message": {"role": "assistant", "content": "alice's answer"}}]}
            ok(world.alice.post(CHAT + "/answer", json={"sandbox_id": world.sid, "index": call["index"],
                                                        "response": mine}))
            assert wait_for(lambda: "alice's answer" in execute(a, world.sid, "cat /tmp/reply")["stdout"], 60)
            assert "bob was here" not in execute(a, world.sid, "cat /tmp/reply")["stdout"]
        finally:
            b.post("/delete", json={"sandbox_id": bobs})


# -- WebSockets: raw TCP (portforward) and the WebSocket proxy to alice's port ------------------

async def _tcp_over_ws(admin: Admin, token: str, sid: str) -> tuple[bytes, str]:
    """What a GET of /s on port 8000 returns over ``portforward``, and the close reason."""
    url = admin.url.replace("http://", "ws://") + f"{PREFIX}/sandboxes/{sid}/portforward?port=8000"
    received, reason = b"", ""
    try:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(b"GET /s HTTP/1.0\r\nHost: x\r\n\r\n")
            while True:
                received += await asyncio.wait_for(ws.recv(), 30)
    except websockets.exceptions.ConnectionClosed as exc:
        reason = exc.rcvd.reason if exc.rcvd else ""
    return received, reason


async def test_another_tenants_port_over_a_websocket_is_a_missing_sandboxs(world):
    fake = fresh_id(world.sid)
    theirs, reason = await _tcp_over_ws(world.admin, TOKEN_B, world.sid)
    nobodys, nobodys_reason = await _tcp_over_ws(world.admin, TOKEN_B, fake)
    assert SECRET.encode() not in theirs and theirs == nobodys == b""
    assert reason.replace(world.sid, fake) == nobodys_reason and "not found" in reason, (reason, nobodys_reason)
    # control: alice's own TCP stream reaches her server and its secret
    mine, _ = await _tcp_over_ws(world.admin, TOKEN_A, world.sid)
    assert mine.startswith(b"HTTP/1.0 200") and mine.endswith(SECRET.encode()), mine[:300]
