"""Tenants apart on the env and model doors: E2B's control plane and envd, GEM envs and vector
envs, gym sessions, training instances, and the Chat protocol's exchange and in-sandbox
endpoint. Bob's request for alice's object is answered exactly like one for an id nobody has,
with alice's honest request as the control (see test_tenants.py and tenants.py)."""

from __future__ import annotations

import pytest

from tests.security.conftest import TOKEN_A, TOKEN_B, execute, rock, start, wait_for
from tests.security.tenants import CHAT, GEM, GYM, SECRET, TRAINING, fresh_id, ok, req, unknown_alike


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
    "gem_fork": (req("POST", GEM + "/fork", {"sandbox_id": "{sid}", "n": 2}), "env"),
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
