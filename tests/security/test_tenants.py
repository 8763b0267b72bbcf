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

import httpx
import pytest
import websockets

from rock.admin.context import PREFIX
from tests.admin.harness import Admin
from tests.security.conftest import TOKEN_A, TOKEN_B, TOKENS, execute, rock
from tests.security.tenants import CHAT, GEM, GYM, SECRET, TRAINING, client, fresh_id, ok, req, unknown_alike


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
    "pause": req("POST", PREFIX + "/sandboxes/{sid}/pause"),
    "pause_body": req("POST", PREFIX + "/pause", {"sandbox_id": "{sid}"}),
    "resume": req("POST", PREFIX + "/sandboxes/{sid}/resume"),
    "resume_body": req("POST", PREFIX + "/resume", {"sandbox_id": "{sid}"}),
    "snapshot": req("POST", PREFIX + "/sandboxes/{sid}/snapshot", {"name": "bobs"}),
    "fork": req("POST", PREFIX + "/sandboxes/{sid}/fork", {"count": 1}),
    "restore": req("POST", PREFIX + "/sandboxes/{sid}/restore", {"snapshot": "nosuch"}),
    "stop": req("POST", PREFIX + "/stop", {"sandbox_id": "{sid}"}),
    "delete": req("POST", PREFIX + "/delete", {"sandbox_id": "{sid}"}),
    "chat_start": req("POST", CHAT + "/start", {"sandbox_id": "{sid}"}),
    "chat_stop": req("POST", CHAT + "/stop", {"sandbox_id": "{sid}"}),
    "chat_answer": req("POST", CHAT + "/answer", {"sandbox_id": "{sid}", "index": 1,
                                                  "response": {"choices": [{"message": {"role": "assistant",
                                                                                        "content": "bob"}}]}}),
    "chat_anti_call": req("POST", CHAT + "/anti_call_llm", {"sandbox_id": "{sid}", "index": 1, "call_timeout": 1,
                                                          "response_payload": '{{"choices": []}}'}),
    "ui_stop": req("POST", "/ui/sandboxes/{sid}/stop"),
    "ui_delete": req("POST", "/ui/sandboxes/{sid}/delete"),
    "ui_pause": req("POST", "/ui/sandboxes/{sid}/pause"),
    "ui_resume": req("POST", "/ui/sandboxes/{sid}/resume"),
    "ui_snapshot": req("POST", "/ui/sandboxes/{sid}/snapshot"),
    "ui_fork": req("POST", "/ui/sandboxes/{sid}/fork"),
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
    # bob's own usage is his to see (his namespace by name); nothing else names a namespace or an object
    own = [line for line in bobs.splitlines() if line.startswith('rock_tenant_usage{namespace="bob"')]
    assert own, bobs[-2000:]  # control: the per-namespace series is there, for the scraper's namespace
    others = "\n".join(line for line in bobs.splitlines() if line not in own)
    for i in world.ids() + [world.bobs_e2b["sandboxID"], "alice", "bob"]:
        assert i.split(":")[0] not in others, i
    # control: the scrape counts alice's running sandboxes (it reads the same records, by state)
    running = [line for line in bobs.splitlines() if line.startswith("rock_sandboxes{") and 'state="running"' in line]
    assert running and sum(float(line.rsplit(" ", 1)[1]) for line in running) >= 3, bobs[:2000]


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


# -- snapshots: alice's, by name, for bob exactly like a missing one ---------------------------

SNAPSHOT_USES = {
    "get": lambda who, name: who.get(f"{PREFIX}/snapshots/{name}"),
    "delete": lambda who, name: who.delete(f"{PREFIX}/snapshots/{name}"),
    "start_from": lambda who, name: who.post(PREFIX + "/start_async", json={"snapshot": name}),
}


def test_another_tenants_snapshot_is_a_missing_one_and_its_name_stays_free(world):
    r = ok(world.alice.post(f"{PREFIX}/sandboxes/{world.sid}/snapshot", json={"name": "alices"}))
    name = r.json()["result"]["name"]
    started = []
    try:
        assert name.startswith("alices.")  # the caller's name, in her namespace
        for use in SNAPSHOT_USES.values():
            unknown_alike(lambda n: use(world.bob, n), name)
        assert name not in ok(world.bob.get(PREFIX + "/snapshots")).text
        # bob choosing the same name gets a snapshot of his own (never a 409 that says hers exists)
        with rock(world.admin, TOKEN_B) as b:
            from tests.security.conftest import start

            bobs = start(b)
            started.append((world.bob, bobs))
        mine = ok(world.bob.post(f"{PREFIX}/sandboxes/{bobs}/snapshot", json={"name": "alices"})).json()["result"]
        assert mine["name"] != name
        # bob cannot roll his own sandbox back onto her snapshot (her files): it is a missing one
        unknown_alike(lambda n: world.bob.post(f"{PREFIX}/sandboxes/{bobs}/restore", json={"snapshot": n}), name)
        ok(world.bob.delete(f"{PREFIX}/snapshots/{mine['name']}"))
        # control: alice's snapshot is hers to see, list and start from; it was not deleted
        ok(world.alice.get(f"{PREFIX}/snapshots/{name}"), name)
        assert name in ok(world.alice.get(PREFIX + "/snapshots")).text
        child = ok(world.alice.post(PREFIX + "/start_async", json={"snapshot": name})).json()["result"]["sandbox_id"]
        started.append((world.alice, child))
        with rock(world.admin, TOKEN_A) as a:
            assert execute(a, child, "cat /tmp/secret")["stdout"] == SECRET
            # control of bob's restore: alice rolls her own sandbox back onto her snapshot
            execute(a, child, "echo later > /tmp/secret")
            ok(world.alice.post(f"{PREFIX}/sandboxes/{child}/restore", json={"snapshot": name}))
            assert execute(a, child, "cat /tmp/secret")["stdout"] == SECRET
    finally:
        for who, sid in started:
            who.post(PREFIX + "/delete", json={"sandbox_id": sid})
        world.alice.delete(f"{PREFIX}/snapshots/{name}")


# -- the e2b door's pause, resume, snapshots and fork: alice's E2B sandbox for bob ---------------

E2B_WRITES = {
    "pause": req("POST", "/sandboxes/{sid}/pause", {}),
    "resume": req("POST", "/sandboxes/{sid}/resume", {}),
    "connect": req("POST", "/v2/sandboxes/{sid}/connect", {}),
    "snapshot": req("POST", "/sandboxes/{sid}/snapshots", {"name": "bobs"}),
    "fork": req("POST", "/sandboxes/{sid}/fork", {"count": 1}),
}


@pytest.mark.parametrize("name", sorted(E2B_WRITES))
def test_another_tenants_e2b_sandbox_cannot_be_paused_snapshotted_or_forked(world, name):
    sid = world.e2b["sandboxID"]
    unknown_alike(lambda s: E2B_WRITES[name](world.bob, sid=s), sid)
    # control: alice's E2B sandbox still runs, unpaused, and nothing was taken of it
    assert ok(world.alice.get(f"/sandboxes/{sid}")).json()["state"] == "running"
    assert ok(world.bob.get("/snapshots")).json() == []
    assert sid not in ok(world.alice.get("/snapshots")).text


def test_another_tenants_e2b_snapshot_is_a_missing_template(world):
    sid = world.e2b["sandboxID"]
    snap = ok(world.alice.post(f"/sandboxes/{sid}/snapshots", json={"name": "alices"})).json()["snapshotID"]
    try:
        unknown_alike(lambda n: world.bob.post("/v2/sandboxes", json={"templateID": n}), snap)
        unknown_alike(lambda n: world.bob.delete(f"/templates/{n}"), snap)
        assert snap not in ok(world.bob.get("/snapshots")).text
        assert snap in ok(world.alice.get("/snapshots")).text  # control: hers, listed, not deleted
    finally:
        ok(world.alice.delete(f"/templates/{snap}"))
