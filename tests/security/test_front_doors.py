"""Finding 10: every front door answers a malformed or half-sent request with a 4xx that says
why, and times out one that stops halfway.

Before: the in-sandbox Chat endpoint closed the connection with no answer on some malformed JSON
(the fast parser's error was not caught) and answered 413 without reading the body (urllib saw a
reset); an E2B download of a dangling symlink answered 200 and cut the stream; half-sent
requests to the admin or the endpoint were never timed out."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from rock.admin import http_protocol
from rock.agent.chat import wire as chatwire
from rock.sdk.model import ChatTrainer
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.security.conftest import TOKEN_A, execute, rock, wait_for

# Run inside the sandbox: each request, what came back ([status, message]) or what broke.
CLIENT = r'''
import json, socket, sys, urllib.request, urllib.error
def post(path, data, headers=None):
    req = urllib.request.Request("http://127.0.0.1:8080" + path, data, headers or {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return [r.status, r.read().decode()[:200]]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())["error"]["message"]]
    except Exception as e:
        return ["broken", repr(e)]
def raw(data):
    s = socket.create_connection(("127.0.0.1", 8080), timeout=60)
    s.sendall(data)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except OSError as e:
            return ["broken", repr(e)]
        if not chunk:
            break
        out += chunk
    if not out:
        return ["broken", "closed with no answer"]
    head, _, body = out.partition(b"\r\n\r\n")
    return [int(head.split()[1]), json.loads(body)["error"]["message"]]
chat = "/v1/chat/completions"
for body in ('{"model" 1}', '[1,2', '{"a":"\x01"}', '[' * 100000, '\xff'):
    print(json.dumps(post(chat, body.encode("latin-1"))))
print(json.dumps(post("/v1/agent/watch", b'{"pid": 1e999}')))
print(json.dumps(post(chat, b"x" * (9 << 20))))
print(json.dumps(raw(b"POST " + chat.encode() + b" HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")))
print(json.dumps(post("/v1/models", None)))
'''


async def test_the_chat_endpoint_answers_every_malformed_request_with_a_4xx(tenants):
    sandbox = Sandbox(SandboxConfig(base_url=tenants.url, token=TOKEN_A, memory="1g", cpus=1))
    await sandbox.start()
    trainer = ChatTrainer.for_sandbox(sandbox)
    try:
        await sandbox.write_bytes("/tmp/c.py", CLIENT.encode())
        await trainer.start(sandbox.sandbox_id)
        obs = await sandbox.arun('"$ROCK_HOST_PYTHON" /tmp/c.py', timeout=120)
        out = [json.loads(line) for line in obs.output.splitlines() if line.startswith("[")]
        assert len(out) == 9, obs.output
        *bad_json, watch, too_large, bad_chunk, models = out
        for status, message in bad_json:  # never a dropped connection: a 400 that says what is wrong
            assert status == 400 and "not JSON" in message, out
        assert watch[0] == 400 and "pid" in watch[1], out
        assert too_large[0] == 413 and str(8 << 20) in too_large[1], out  # read by urllib, not a reset
        assert bad_chunk[0] == 400 and "chunked" in bad_chunk[1], out
        # control: the endpoint is up and answers a well-formed request
        assert models[0] == 200 and "rock-policy" in models[1], out
    finally:
        await trainer.aclose()
        await sandbox.delete()


def _serve_one(monkeypatch) -> tuple[socket.socket, dict]:
    """chatwire.Http reading one request from a loopback socket, with short timeouts; returns the
    client side and what read_request gave (filled in by a thread)."""
    monkeypatch.setattr(chatwire, "HEAD_TIMEOUT", 0.5, raising=False)
    monkeypatch.setattr(chatwire, "BODY_IDLE_TIMEOUT", 0.5, raising=False)
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    got: dict = {}

    def read():
        got["request"] = chatwire.Http(server, 1 << 20).read_request()
        server.close()

    threading.Thread(target=read, daemon=True).start()
    return client, got


def _answer(client: socket.socket, limit: float = 10) -> tuple[float, bytes]:
    client.settimeout(limit)
    began, data = time.monotonic(), b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except OSError:
        pass
    return time.monotonic() - began, data


@pytest.mark.parametrize("sent, words", [
    (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", b"head did not arrive"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":", b"body did not arrive")])
def test_the_chat_endpoint_times_out_a_half_sent_request(monkeypatch, sent, words):
    client, got = _serve_one(monkeypatch)
    client.sendall(sent)
    took, data = _answer(client)
    client.close()
    assert data.startswith(b"HTTP/1.1 408 ") and words in data, data
    assert took < 5 and wait_for(lambda: "request" in got, 5) and got["request"] is None
    # control: the same request sent whole is read
    client, got = _serve_one(monkeypatch)
    client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    assert wait_for(lambda: "request" in got, 5)
    assert got["request"] == ("POST", "/v1/chat/completions", {"host": "x", "content-length": "2"}, b"{}")
    client.close()


def test_the_admin_times_out_half_sent_requests(tenants, monkeypatch):
    monkeypatch.setattr(http_protocol.HeldHeadHttpTools, "head_timeout", 0.5, raising=False)
    monkeypatch.setattr(http_protocol.HeldHeadHttpTools, "body_idle_timeout", 0.5, raising=False)
    for sent, status, words in (
            (b"POST /apis/envs/sandbox/v1/execute HTTP/1.1\r\nhost: x\r\n", b"408", b"head did not arrive"),
            (b"POST /apis/envs/sandbox/v1/execute HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
             b"authorization: Bearer " + TOKEN_A.encode() + b"\r\ncontent-length: 100\r\n\r\n{\"sandbox_id\":", b"408",
             b"no byte of the request body")):
        with socket.create_connection(("127.0.0.1", tenants.port)) as client:
            client.sendall(sent)
            took, data = _answer(client)
        assert data.startswith(b"HTTP/1.1 " + status) and words in data, data
        assert took < 5
    # control: a whole request on the same admin is answered
    assert httpx.get(tenants.url + "/health", timeout=10).status_code == 200


def test_an_e2b_download_of_what_cannot_be_read_is_a_4xx_not_a_cut_200(tenants):
    with httpx.Client(base_url=tenants.url, timeout=120) as client, rock(tenants, TOKEN_A) as alice:
        r = client.post("/v2/sandboxes", headers={"X-API-KEY": TOKEN_A}, json={"templateID": "base", "timeout": 300})
        assert r.status_code == 201, r.text
        box = r.json()
        envd = {"E2b-Sandbox-Id": box["sandboxID"], "X-Access-Token": box["envdAccessToken"]}
        try:
            execute(alice, box["sandboxID"], "ln -s /no/such/target /tmp/dangling; echo readable > /tmp/real")
            r = client.get("/files", params={"path": "/tmp/dangling"}, headers=envd)
            assert r.status_code == 404 and "/tmp/dangling" in r.json()["message"], (r.status_code, r.text)
            # control: a readable file downloads whole
            r = client.get("/files", params={"path": "/tmp/real"}, headers=envd)
            assert r.status_code == 200 and r.content == b"readable\n"
        finally:
            client.delete(f"/sandboxes/{box['sandboxID']}", headers={"X-API-KEY": TOKEN_A})
