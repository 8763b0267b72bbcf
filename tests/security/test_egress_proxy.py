"""The egress gate's upstream through an operator's SOCKS5 proxy, and the relay's request line,
keep-alive and E2B ``iam`` tokens and transforms changed while a sandbox runs.

The small internet (``egress_internet``) gets two servers of this test's: on ``bound.test`` and
``other.test`` an HTTP server (plain on 8081, TLS on 8443 with a certificate of the test's CA,
which the relay trusts through ``egress_ca_file``) that logs each request's path, credential
headers and the client's port (one port: one connection); on ``proxy.test:1080`` a SOCKS5 server
(RFC 1928 CONNECT with RFC 1929 user and password) that logs each CONNECT it serves. Each attack
sits beside a control that shows the same request passing where it is allowed.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets

import pytest

from rock.actions.secrets import placeholder
from rock.sdk.sandbox import Sandbox, SandboxConfig, Secrets
from tests.admin.harness import backend_params
from tests.security.egress_internet import HTTP_SERVER, Internet
from tests.security.test_secrets import _ca, relay_admin

NAMES = ("bound.test", "other.test", "proxy.test")
PROXY_USER, PROXY_PASSWORD = "rock", "proxy-" + pysecrets.token_hex(6)

SERVERS = HTTP_SERVER + r"""
import json, select, socket, ssl, struct, sys, threading
from http.server import BaseHTTPRequestHandler

http_log, socks_log, cert, user, password = sys.argv[1:6]
lock = threading.Lock()

def log(path, entry):
    with lock, open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body_in=b""):
        log(http_log, {"port": self.server.server_port, "host": self.headers.get("Host"), "path": self.path,
                       "authorization": self.headers.get("Authorization"), "x-api-key": self.headers.get("X-Api-Key"),
                       "peer": self.client_address[1], "body": body_in.decode()})
        body = b"logged"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer()
    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
    def log_message(self, *a): pass

def pipe(a, b):
    try:
        while True:
            r, _, _ = select.select([a, b], [], [], 60)
            if not r:
                return
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    finally:
        a.close(); b.close()

def socks(conn):
    try:
        n = conn.recv(2)[1]; methods = conn.recv(n)
        if 2 not in methods:
            conn.sendall(b"\x05\xff"); conn.close(); return
        conn.sendall(b"\x05\x02")
        ulen = conn.recv(2)[1]; u = conn.recv(ulen).decode(); plen = conn.recv(1)[0]; p = conn.recv(plen).decode()
        if (u, p) != (user, password):
            conn.sendall(b"\x01\x01"); conn.close(); return
        conn.sendall(b"\x01\x00")
        head = conn.recv(4)
        addr = socket.inet_ntoa(conn.recv(4)) if head[3] == 1 else conn.recv(conn.recv(1)[0]).decode()
        port = struct.unpack("!H", conn.recv(2))[0]
        log(socks_log, {"target": f"{addr}:{port}"})
        up = socket.create_connection((addr, port), timeout=10)
        conn.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")
        pipe(conn, up)
    except Exception:
        conn.close()

def serve_socks():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 1080)); s.listen(64)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=socks, args=(conn,), daemon=True).start()

plain = Server(("0.0.0.0", 8081), H)
tls = Server(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
threading.Thread(target=serve_socks, daemon=True).start()
print("ready", flush=True)
plain.serve_forever()
"""

# Inside the sandbox: requests on ONE connection (http.client keeps it), each "METHOD path
# [header value] [body]"; prints each answer, or why not.
CLIENT = r"""
import http.client, json, sys
scheme, host, port, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
try:
    conn = (http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection)(host, port, timeout=10)
    for method, path, headers, body in requests:
        conn.request(method, path, body=body.encode() if body else None, headers=headers)
        print(conn.getresponse().read().decode())
    conn.close()
except Exception as exc:
    print("failed:", type(exc).__name__, exc)
"""


@pytest.fixture(scope="module")
def internet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy-internet")
    ca, server_cert = _ca(tmp)
    net = Internet("h46", NAMES).start()
    net.log, net.socks_log, net.ca = tmp / "requests.jsonl", tmp / "socks.jsonl", ca
    net.log.touch()
    net.socks_log.touch()
    try:
        net.serve(SERVERS, str(net.log), str(net.socks_log), str(server_cert), PROXY_USER, PROXY_PASSWORD)
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="module", params=backend_params())
def proxy_admin(request, internet):
    server = relay_admin(request.param, internet)
    yield server
    server.stop(stop_sandboxes=True)


def _lines(path, since: int) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[since:]]


class Seen:
    """What the HTTP server and the proxy logged since it was made."""

    def __init__(self, net):
        self.net, self.http, self.socks = net, len(net.log.read_text().splitlines()), len(
            net.socks_log.read_text().splitlines())

    def requests(self) -> list[dict]:
        return _lines(self.net.log, self.http)

    def connects(self) -> list[str]:
        return [e["target"] for e in _lines(self.net.socks_log, self.socks)]


async def _client(sandbox: Sandbox, scheme: str, host: str, port: int, requests: list) -> list[str]:
    out = (await sandbox.arun(f"python3 /tmp/client.py {scheme} {host} {port} '{json.dumps(requests)}'")).output
    return out.strip().splitlines()


async def test_proxy_request_line_and_keep_alive(proxy_admin, internet):
    value = "sk-" + pysecrets.token_hex(12)
    secrets = Secrets(SandboxConfig(base_url=proxy_admin.url, token="e2b-token-a"))
    await secrets.create("apikey", value, hosts=["bound.test"])
    ph = placeholder("apikey")
    policy = {"allow": ["bound.test"], "ports": [8081, 8443]}
    sandbox = Sandbox(SandboxConfig(base_url=proxy_admin.url, token="e2b-token-a", memory="512m", cpus=1,
                                    egress=policy, secrets={"API_KEY": "apikey"}))
    await sandbox.start()
    try:
        await sandbox.write_bytes("/tmp/client.py", CLIENT.encode())
        bound = internet.addresses["bound.test"]

        # the request line: a bound placeholder in the path and query becomes the value, on
        # several requests of one connection (keep-alive; a POST's body in between), over HTTP and TLS
        for scheme, port in (("http", 8081), ("https", 8443)):
            seen = Seen(internet)
            reqs = [["GET", f"/v1/{ph}?key={ph}", {"X-Api-Key": ph}, ""],
                    ["POST", "/body", {"Content-Type": "text/plain"}, f"in a body: {ph}"],
                    ["GET", f"/again?key={ph}", {}, ""]]
            assert await _client(sandbox, scheme, "bound.test", port, reqs) == ["logged"] * 3
            got = seen.requests()
            assert [g["path"] for g in got] == [f"/v1/{value}?key={value}", "/body", f"/again?key={value}"], got
            assert got[0]["x-api-key"] == value
            assert got[1]["body"] == f"in a body: {ph}"  # bodies are not rewritten (see docs/security.md)
            assert len({g["peer"] for g in got}) == 1, got  # one connection carried all three
            assert seen.connects() == []  # no proxy in this policy: direct

        # red team: the placeholder in the request line to a host it is not bound to stays a placeholder
        await sandbox.update_egress({"allow": ["bound.test", "other.test"], "ports": [8081, 8443]})
        seen = Seen(internet)
        assert await _client(sandbox, "http", "other.test", 8081, [["GET", f"/x?key={ph}", {}, ""]]) == ["logged"]
        assert [g["path"] for g in seen.requests()] == [f"/x?key={ph}"]

        # the operator's SOCKS5 proxy: allowed traffic (piped and brokered) goes through it ...
        proxied = {"allow": ["bound.test"], "ports": [8081, 8443],
                   "proxy": {"address": "proxy.test:1080", "username": PROXY_USER, "password": PROXY_PASSWORD}}
        answer = await sandbox.update_egress(proxied)
        assert "proxy.test:1080" in json.dumps(answer) and PROXY_PASSWORD not in json.dumps(answer), answer
        seen = Seen(internet)
        assert await _client(sandbox, "https", "bound.test", 8443, [["GET", f"/p?key={ph}", {}, ""]]) == ["logged"]
        assert await _client(sandbox, "http", "bound.test", 8081, [["GET", "/plain", {}, ""]]) == ["logged"]
        assert seen.connects() == [f"{bound}:8443", f"{bound}:8081"], seen.connects()
        assert [g["path"] for g in seen.requests()] == [f"/p?key={value}", "/plain"]
        # ... denied traffic never reaches it
        seen = Seen(internet)
        out = await _client(sandbox, "http", "other.test", 8081, [["GET", "/denied", {}, ""]])
        assert out[0].startswith("failed:"), out
        assert seen.connects() == [] and seen.requests() == []

        # fail closed: with the proxy unreachable (nothing on 1081) or refusing our password,
        # allowed traffic fails rather than going direct
        for broken in ({"address": "proxy.test:1081"},
                       {"address": "proxy.test:1080", "username": PROXY_USER, "password": "wrong"}):
            await sandbox.update_egress({**proxied, "proxy": broken})
            seen = Seen(internet)
            for scheme, port in (("http", 8081), ("https", 8443)):
                out = await _client(sandbox, scheme, "bound.test", port, [["GET", "/closed", {}, ""]])
                assert out[0].startswith("failed:"), (broken, out)
            assert seen.requests() == [], seen.requests()
        # control: the same requests pass with the proxy up again
        await sandbox.update_egress(proxied)
        seen = Seen(internet)
        for scheme, port in (("http", 8081), ("https", 8443)):
            assert await _client(sandbox, scheme, "bound.test", port, [["GET", "/open", {}, ""]]) == ["logged"]
        assert len(seen.requests()) == 2 and len(seen.connects()) == 2

        # bad input: a proxy on this host, or not host:port, is a 400 and the policy in force stays
        for bad in ({"address": "127.0.0.1:1080"}, {"address": "localhost:1080"}, {"address": "proxy.test"}):
            with pytest.raises(Exception) as err:
                await sandbox.update_egress({**proxied, "proxy": bad})
            assert "400" in str(err.value) or "422" in str(err.value) or "proxy" in str(err.value), err.value
        seen = Seen(internet)
        assert await _client(sandbox, "http", "bound.test", 8081, [["GET", "/kept", {}, ""]]) == ["logged"]
        assert len(seen.connects()) == 1
    finally:
        await sandbox.stop()
        await secrets.delete("apikey")


def _claims(jwt: str) -> dict:
    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_e2b_sdk_proxy_iam_and_rules_update(proxy_admin, internet, tmp_path):
    """E2B's ``egress_proxy``, ``iam`` tokens and ``update_network`` with new ``rules`` through the
    unmodified SDK (e2b 2.63's wire)."""
    from tests.e2b.test_e2b_sdk import e2b_python, run_scenario

    env = {"VALUE": "e2b-sk-" + pysecrets.token_hex(12), "LOG": str(internet.log), "SOCKS_LOG": str(internet.socks_log),
           "PROXY": json.dumps({"address": "proxy.test:1080", "username": PROXY_USER, "password": PROXY_PASSWORD}),
           "BOUND": internet.addresses["bound.test"]}
    os.environ.update(env)
    try:
        out = run_scenario(e2b_python("newest"), proxy_admin, "../security/scenario_e2b_proxy.py", "E2B PROXY OK",
                           tmp_path)
    finally:
        for key in env:
            os.environ.pop(key)
    # the token the relay minted is this admin's: it verifies with the issuer's key
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    token = next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("TOKEN "))
    (key_file,) = list(proxy_admin.state_dir.rglob("identity.key"))
    public = load_pem_private_key(key_file.read_bytes(), None).public_key()
    signing, sig = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                  signing.encode(), ec.ECDSA(hashes.SHA256()))  # raises if not
    claims = _claims(token)
    assert claims["aud"] == ["bound.test"] and claims["sub"].startswith("spiffe://") and claims["exp"] > claims["iat"]
