"""Credential brokering: a sandbox holds a placeholder, the egress relay sends the secret's value
to the hosts it is bound to and to no other.

The small internet (``egress_internet``) gets a scripted server of this test's on two names,
``bound.test`` and ``other.test``: plain HTTP on 8081 and TLS on 8443 (a certificate of a CA the
test makes, which the admin's relay trusts through ``egress_ca_file``). It logs the credential
headers of every request it gets, and never answers them back. One sandbox per backend, started
through ROCK's SDK with ``secrets={"API_KEY": "apikey"}`` (bound to ``bound.test``), sends its
placeholder everywhere; the server's log says what arrived.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets as pysecrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rock.actions.secrets import placeholder
from rock.admin.context import PREFIX
from rock.sdk.sandbox import Sandbox, SandboxConfig, Secrets
from tests.admin.harness import Admin, backend_params
from tests.security.egress_internet import HTTP_SERVER, Internet

NAMES = ("bound.test", "other.test")
TOKENS = {"e2b-token-a": "team-a", "e2b-token-b": "team-b"}  # the tokens run_scenario gives the SDK
SRC = str(Path(__file__).resolve().parents[2] / "src")

LOGGER = HTTP_SERVER + r"""
import json, socket, ssl, sys, threading
from http.server import BaseHTTPRequestHandler

log_path, cert = sys.argv[1], sys.argv[2]
lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        entry = {"port": self.server.server_port, "host": self.headers.get("Host"),
                 "authorization": self.headers.get("Authorization"), "x-api-key": self.headers.get("X-Api-Key")}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        body = b"logged"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

plain = Server(("0.0.0.0", 8081), H)
tls = Server(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
print("ready", flush=True)
plain.serve_forever()
"""

# Inside the sandbox: GET url with the header given, print what came back (or why not).
FETCH = r"""
import ssl, sys, urllib.request
url, header, value = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = None
if len(sys.argv) > 4:  # a host whose certificate is not in the sandbox's trust: look, do not verify
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    req = urllib.request.Request(url, headers={header: value})
    print(urllib.request.urlopen(req, timeout=10, context=ctx).read().decode())
except Exception as exc:
    print("failed:", type(exc).__name__, exc)
"""


def _ca(tmp: Path) -> tuple[Path, Path]:
    """A CA of the test's, and a server certificate it signs for both names."""
    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test internet CA")).issuer_name(name("test internet CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("bound.test")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in NAMES]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, server_path = tmp / "ca.pem", tmp / "server.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()) + leaf.public_bytes(serialization.Encoding.PEM))
    return ca_path, server_path


@pytest.fixture(scope="module")
def internet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secrets-internet")
    ca, server_cert = _ca(tmp)
    net = Internet("h36", NAMES).start()
    net.log, net.ca = tmp / "requests.jsonl", ca
    net.log.touch()
    try:
        net.serve(LOGGER, str(net.log), str(server_cert))
        yield net
    finally:
        net.stop()


def relay_admin(backend: str, internet: Internet) -> Admin:
    """An admin whose gate resolves the small internet's names and whose relay trusts its CA."""
    return Admin(backend, egress_hosts=internet.addresses, tokens=TOKENS, egress_ca_file=str(internet.ca)).start()


@pytest.fixture(scope="module", params=backend_params())
def secrets_admin(request, internet):
    server = relay_admin(request.param, internet)
    yield server
    server.stop(stop_sandboxes=True)


def _logged(internet, since: int) -> list[dict]:
    return [json.loads(line) for line in internet.log.read_text().splitlines()[since:]]


async def _fetch(sandbox: Sandbox, url: str, header: str, value: str, insecure: bool = False) -> str:
    args = f"{url} {header} '{value}'" + (" insecure" if insecure else "")
    return (await sandbox.arun("python3 /tmp/fetch.py " + args)).output.strip()


async def test_secret_is_sent_to_its_host_only(secrets_admin, internet):
    value = "sk-live-" + pysecrets.token_hex(16)
    a = httpx.Client(base_url=secrets_admin.url + PREFIX, timeout=60, headers={"Authorization": "Bearer e2b-token-a"})
    b = httpx.Client(base_url=secrets_admin.url + PREFIX, timeout=60, headers={"Authorization": "Bearer e2b-token-b"})
    secrets = Secrets(SandboxConfig(base_url=secrets_admin.url, token="e2b-token-a"))
    made = await secrets.create("apikey", value, hosts=["bound.test"])
    assert made.hosts == ["bound.test"] and made.placeholder == placeholder("apikey")
    # reads never carry the value
    for r in (a.get("/secrets"), a.get("/secrets/apikey")):
        assert r.status_code == 200 and value not in r.text and "apikey" in r.text, r.text
    # bad input: a clear 4xx naming what is wrong
    assert a.post("/secrets", json={"name": "nohost", "value": "v"}).status_code == 400
    assert "bound to no host" in a.post("/secrets", json={"name": "nohost", "value": "v", "hosts": []}).text
    for bad in ({"name": "x", "value": "v", "hosts": ["bad host!"]}, {"name": "Bad Name", "value": "v", "hosts": ["a.test"]},
                {"name": "x", "value": "a\r\nX-Evil: 1", "hosts": ["a.test"]}, {"name": "x", "value": "", "hosts": ["a.test"]},
                {"name": "x", "value": "v", "hosts": ["a.test"], "extra": 1}):
        assert a.post("/secrets", json=bad).status_code == 422, bad
    assert a.post("/secrets", json={"name": "apikey", "value": "v2", "hosts": ["a.test"]}).status_code == 409
    # another tenant's secret is a missing one, on every read and at start
    r = b.get("/secrets/apikey")
    assert r.status_code == 404 and "missing" in r.text and value not in r.text
    assert b.delete("/secrets/apikey").status_code == 404
    assert b.get("/secrets").json()["result"] == []
    r = b.post("/start_async", json={"memory": "512m", "cpus": 1, "egress": {"allow": ["bound.test"]},
                                     "secrets": {"API_KEY": "apikey"}})
    assert r.status_code == 404 and "missing" in r.text, r.text
    # secrets need the relay, which lives in the egress gate
    r = a.post("/start_async", json={"memory": "512m", "cpus": 1, "secrets": {"API_KEY": "apikey"}})
    assert r.status_code == 400 and "egress" in r.text, r.text

    sandbox = Sandbox(SandboxConfig(base_url=secrets_admin.url, token="e2b-token-a", memory="512m", cpus=1,
                                    egress={"allow": ["bound.test", "other.test"], "ports": [8081, 8443]},
                                    secrets={"API_KEY": "apikey"}))
    await sandbox.start()
    try:
        await sandbox.write_bytes("/tmp/fetch.py", FETCH.encode())
        ph = (await sandbox.arun("printf %s \"$API_KEY\"")).output.strip()
        assert ph == placeholder("apikey")
        bearer = f"Bearer {ph}"
        seen = len(internet.log.read_text().splitlines())
        # the bound host gets the value, over plain HTTP and over TLS (the relay's CA is trusted)
        assert await _fetch(sandbox, "http://bound.test:8081/", "Authorization", bearer) == "logged"
        assert await _fetch(sandbox, "https://bound.test:8443/", "X-Api-Key", ph) == "logged"
        # red team: the same placeholder to another allowed host arrives as the placeholder, plain
        # and over TLS (end to end with that host: never terminated by the relay)
        assert await _fetch(sandbox, "http://other.test:8081/", "Authorization", bearer) == "logged"
        assert await _fetch(sandbox, "https://other.test:8443/", "X-Api-Key", ph, insecure=True) == "logged"
        # a TLS client that trusts only the image's own CAs refuses the relay's certificate
        strict = await sandbox.arun("SSL_CERT_FILE= python3 -c \"import urllib.request; "
                                    "urllib.request.urlopen('https://bound.test:8443/', timeout=10)\" 2>&1 | tail -1")
        assert "CERTIFICATE_VERIFY_FAILED" in strict.output, strict.output
        got = _logged(internet, seen)
        assert [(e["port"], e["host"].split(":")[0], e["authorization"], e["x-api-key"]) for e in got] == [
            (8081, "bound.test", f"Bearer {value}", None),
            (8443, "bound.test", None, value),
            (8081, "other.test", bearer, None),
            (8443, "other.test", None, ph)], got

        # the value is nowhere the sandbox can read: its environment, every process's, its files
        env = (await sandbox.arun("env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'")).output
        assert ph in env and value not in env  # control: the placeholder is there
        found = await sandbox.arun(f"grep -rlsF -e '{value}' -e '{ph}' / --exclude-dir=proc --exclude-dir=sys "
                                   "--exclude-dir=dev | head -5", timeout=600)
        assert value not in found.output
        # ... nor in a snapshot of it, nor in the admin's records (store, snapshots, records)
        await sandbox.write_bytes("/tmp/uses-it.sh", f"curl -H 'Authorization: Bearer {ph}' https://bound.test/\n".encode())
        await sandbox.snapshot()
        leaks = subprocess.run(["grep", "-rlsF", "--exclude=secrets.json", value, str(secrets_admin.state_dir)],
                               capture_output=True, text=True)
        assert leaks.stdout == "", leaks.stdout
        control = subprocess.run(["grep", "-rlsF", ph, str(secrets_admin.state_dir)], capture_output=True, text=True)
        assert control.stdout, "the placeholder should be in the sandbox's records (a control of the search)"
        secret_file = secrets_admin.state_dir / "secrets.json"
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        # a fork inherits the placeholder, and its requests to the bound host carry the value
        (child,) = await sandbox.fork(1)
        try:
            assert (await child.arun("printf %s \"$API_KEY\"")).output.strip() == ph
            seen = len(internet.log.read_text().splitlines())
            assert await _fetch(child, "http://bound.test:8081/", "Authorization", bearer) == "logged"
            assert await _fetch(child, "http://other.test:8081/", "Authorization", bearer) == "logged"
            assert [e["authorization"] for e in _logged(internet, seen)] == [f"Bearer {value}", bearer]
        finally:
            await child.stop()

        # the CLI's way: list shows no value; a deleted secret is no longer sent
        cli = subprocess.run([sys.executable, "-m", "rock.cli.main", "--json", "secret", "--url", secrets_admin.url,
                              "--token", "e2b-token-a", "list"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": SRC})
        assert cli.returncode == 0 and "apikey" in cli.stdout and value not in cli.stdout, cli.stderr
        await secrets.delete("apikey")
        seen = len(internet.log.read_text().splitlines())
        assert await _fetch(sandbox, "http://bound.test:8081/", "Authorization", bearer) == "logged"
        assert _logged(internet, seen)[0]["authorization"] == bearer
    finally:
        await sandbox.stop()
        await secrets.aclose()


def test_e2b_sdk_secrets(secrets_admin, internet, tmp_path):
    """E2B's ``Secret`` and ``network.rules`` transforms through the unmodified SDK (e2b 2.63's wire)."""
    from tests.e2b.test_e2b_sdk import e2b_python, run_scenario

    os.environ["VALUE"], os.environ["LOG"] = "e2b-sk-" + pysecrets.token_hex(12), str(internet.log)
    try:
        run_scenario(e2b_python("newest"), secrets_admin, "../security/scenario_e2b_secrets.py", "E2B SECRETS OK",
                     tmp_path)
    finally:
        os.environ.pop("VALUE"), os.environ.pop("LOG")


@pytest.mark.gvisor
async def test_a_gvisor_sandbox_gets_its_secret_brokered(internet):
    """The same relay on gVisor (its sandbox's sockets are the host's, in the namespace the gate
    links): the bound host gets the value over HTTP and TLS, another host the placeholder, and the
    sandbox's environment holds only the placeholder. One sandbox: gVisor boots are slow."""
    server = relay_admin("gvisor", internet)
    value = "sk-gvisor-" + pysecrets.token_hex(16)
    secrets = Secrets(SandboxConfig(base_url=server.url, token="e2b-token-a"))
    sandbox = Sandbox(SandboxConfig(base_url=server.url, token="e2b-token-a", memory="512m", cpus=1,
                                    egress={"allow": ["bound.test", "other.test"], "ports": [8081, 8443]},
                                    secrets={"API_KEY": "apikey"}))
    try:
        await secrets.create("apikey", value, hosts=["bound.test"])
        await sandbox.start()
        await sandbox.write_bytes("/tmp/fetch.py", FETCH.encode())
        ph = (await sandbox.arun("printf %s \"$API_KEY\"")).output.strip()
        assert ph == placeholder("apikey")
        seen = len(internet.log.read_text().splitlines())
        assert await _fetch(sandbox, "http://bound.test:8081/", "Authorization", f"Bearer {ph}") == "logged"
        assert await _fetch(sandbox, "https://bound.test:8443/", "X-Api-Key", ph) == "logged"
        assert await _fetch(sandbox, "http://other.test:8081/", "Authorization", f"Bearer {ph}") == "logged"
        got = _logged(internet, seen)
        assert [(e["port"], e["host"].split(":")[0], e["authorization"], e["x-api-key"]) for e in got] == [
            (8081, "bound.test", f"Bearer {value}", None),
            (8443, "bound.test", None, value),
            (8081, "other.test", f"Bearer {ph}", None)], got
        env = (await sandbox.arun("env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'")).output
        assert ph in env and value not in env  # control: the placeholder is there
    finally:
        await sandbox.aclose()
        await secrets.aclose()
        server.stop(stop_sandboxes=True)
