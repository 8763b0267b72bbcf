"""Red team: a sandbox with an egress policy reaches what the policy names and nothing else.

A small internet of the test's own (``egress_internet``) has three names the admin's resolver
gives (``egress_hosts``): ``allowed.test``, ``denied.test`` and ``other.test``. One sandbox per
backend, started through ROCK's SDK with ``allow: [allowed.test], ports: [80]``, tries each way
out; every attempt sits beside a control that shows the same request passing where it is allowed
(or the target answering the host). Its policy is then changed while it runs, and bad policies
are refused with the old one kept.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rock.actions import CreateBashSessionRequest
from rock.admin.context import PREFIX
from rock.runtime.egress import links
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.admin.harness import Admin, backend_params
from tests.security.egress_internet import Internet

NAMES = ("allowed.test", "denied.test", "other.test")
SRC = str(Path(__file__).resolve().parents[2] / "src")
AUTH = {"Authorization": "Bearer e2b-token-a"}
E2B_TOKENS = {"e2b-token-a": "team-a", "e2b-token-b": "team-b"}  # the tokens run_scenario gives the SDK

PROBE = r"""
import socket, sys
mode = sys.argv[1]
try:
    if mode == "http":  # connect to argv[2]:argv[3], say Host argv[4]
        s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {sys.argv[4]}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        print(data.split(b"\r\n\r\n", 1)[1].decode() if b"\r\n\r\n" in data else "unreachable: closed")
    elif mode == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        for _ in range(3):
            s.sendto(b"ping", (sys.argv[2], int(sys.argv[3])))
            try:
                print(s.recvfrom(2048)[0].decode()); break
            except socket.timeout:
                pass
        else:
            print("unreachable: no reply")
    elif mode == "resolve":
        print(socket.gethostbyname(sys.argv[2]))
    elif mode in ("dns-udp", "dns-tcp"):  # ask the resolver at argv[2] for argv[3] directly
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
            bytes([len(p)]) + p.encode() for p in sys.argv[3].split(".")) + b"\x00\x00\x01\x00\x01"
        if mode == "dns-udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
            s.sendto(q, (sys.argv[2], 53)); r = s.recvfrom(4096)[0]
        else:
            s = socket.create_connection((sys.argv[2], 53), timeout=3)
            s.sendall(len(q).to_bytes(2, "big") + q); r = s.recv(4096)[2:]
        print(f"rcode {r[3] & 15} answers {int.from_bytes(r[6:8], 'big')}")
    elif mode == "connect":  # a CONNECT tunnel request to argv[2]:80 for argv[3]
        s = socket.create_connection((sys.argv[2], 80), timeout=5)
        s.sendall(f"CONNECT {sys.argv[3]} HTTP/1.1\r\nHost: {sys.argv[3]}\r\n\r\n".encode())
        print(s.recv(4096).split(b"\r\n")[0].decode() or "unreachable: closed")
    elif mode == "tls":  # a TLS connection to argv[2]:443 saying SNI argv[3] ("-": none)
        import ssl
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((sys.argv[2], 443), timeout=5)
        t = ctx.wrap_socket(raw, server_hostname=None if sys.argv[3] == "-" else sys.argv[3])
        print(t.recv(4096).decode() or "unreachable: closed")
    elif mode == "get":  # urllib, following redirects
        import urllib.request
        print(urllib.request.urlopen(sys.argv[2], timeout=5).read().decode())
except Exception as exc:
    print("unreachable:", type(exc).__name__, exc)
"""


@pytest.fixture(scope="module")
def internet():
    net = Internet("h32", NAMES).start()
    yield net
    net.stop()


@pytest.fixture(scope="module", params=backend_params())
def egress_admin(request, internet):
    server = Admin(request.param, egress_hosts=internet.addresses, tokens=E2B_TOKENS).start()
    yield server
    server.stop(stop_sandboxes=True)


async def _probe(sandbox: Sandbox, *args: str) -> str:
    return (await sandbox.arun("python3 /tmp/probe.py " + " ".join(args))).output.strip()


async def test_egress_policy_red_team(egress_admin, internet):
    a = internet.addresses
    sandbox = Sandbox(SandboxConfig(base_url=egress_admin.url, token="e2b-token-a", memory="512m", cpus=1,
                                    egress={"allow": ["allowed.test"], "ports": [80]}))
    await sandbox.start()
    try:
        await sandbox.write_bytes("/tmp/probe.py", PROBE.encode())
        # control: the allowed name, by its name, on its port
        assert await _probe(sandbox, "http", "allowed.test", "80", "allowed.test") == f"hit {a['allowed.test']} allowed.test"
        assert await _probe(sandbox, "resolve", "allowed.test") == a["allowed.test"]
        # a denied name does not resolve, and its address is not reachable by literal either
        assert (await _probe(sandbox, "resolve", "denied.test")).startswith("unreachable")
        denied = await _probe(sandbox, "http", a["denied.test"], "80", a["denied.test"])
        assert denied.startswith("unreachable"), denied
        # Host mismatch: the denied address, saying the allowed name: dialled at the allowed
        # name's address, never the address the sandbox chose
        mismatch = await _probe(sandbox, "http", a["denied.test"], "80", "allowed.test")
        assert mismatch == f"hit {a['allowed.test']} allowed.test", mismatch
        # DNS to another resolver, over UDP and TCP: our resolver answers, by the same policy
        for mode in ("dns-udp", "dns-tcp"):
            assert await _probe(sandbox, mode, "192.0.2.53", "allowed.test") == "rcode 0 answers 1"  # control
            assert await _probe(sandbox, mode, "192.0.2.53", "denied.test") == "rcode 3 answers 0"
        # a CONNECT tunnel through the allowed host to the denied one (control: to itself, which
        # the allowed server answers, refusing the method)
        assert (await _probe(sandbox, "connect", "allowed.test", "allowed.test:80")).startswith("HTTP/1.")
        assert (await _probe(sandbox, "connect", "allowed.test", "denied.test:80")).startswith("unreachable")
        # a redirect to a denied host is a new connection, refused like any other
        back = "http://allowed.test/redirect?to=http://allowed.test/"
        assert await _probe(sandbox, "get", back) == f"hit {a['allowed.test']} allowed.test"  # control
        away = await _probe(sandbox, "get", "http://allowed.test/redirect?to=http://denied.test/")
        assert away.startswith("unreachable"), away
        # another port of the allowed host
        assert (await _probe(sandbox, "http", "allowed.test", "8080", "allowed.test")).startswith("unreachable")
        # UDP other than DNS (control: the echo answers the host)
        assert internet.udp_echo("allowed.test", b"ping") == b"echo ping"
        assert (await _probe(sandbox, "udp", a["allowed.test"], "9999")).startswith("unreachable")
        # the host's loopback and the admin's own port; the gate's side of the sandbox's link
        port = str(egress_admin.port)
        assert (await _probe(sandbox, "http", "127.0.0.1", port, "127.0.0.1")) .startswith("unreachable")
        gateway = (await sandbox.arun("ip route 2>/dev/null | awk '/default/{print $3}' || true")).output.strip()
        for target in filter(None, [internet.host_ip, gateway]):
            out = await _probe(sandbox, "http", target, port, "allowed.test")
            assert "hit" not in out and "{" not in out, (target, out)
        assert httpx.get(egress_admin.url + "/health", timeout=10).status_code < 500  # control: the admin answers
        # another gated sandbox, open to everything, serving a marker on all its addresses
        other = Sandbox(SandboxConfig(base_url=egress_admin.url, token="e2b-token-b", memory="512m", cpus=1, egress="all"))
        await other.start()
        try:
            await other.write_bytes("/srv/m/index.html", b"other-sandbox-marker")
            await other.create_session(CreateBashSessionRequest(session="srv"))
            await other.arun("cd /srv/m && nohup python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &",
                             session="srv")
            await other.write_bytes("/tmp/probe.py", PROBE.encode())
            its = (await other.arun("python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                    "s.connect(('192.0.2.1', 9)); print(s.getsockname()[0])\"")).output.strip()
            seen = ""
            for _ in range(50):  # control: it reaches its own server once it listens
                seen = await _probe(other, "http", its, "8000", its)
                if "other-sandbox-marker" in seen:
                    break
                await asyncio.sleep(0.2)
            assert "other-sandbox-marker" in seen, seen
            await sandbox.update_egress({"allow": ["allowed.test", "10.0.0.0/8"], "ports": [80, 8000]})
            reach = await _probe(sandbox, "http", its, "8000", its)
            assert "other-sandbox-marker" not in reach and reach.startswith("unreachable"), reach
            assert (await _probe(other, "http", "allowed.test", "80", "allowed.test")).startswith("hit")  # "all" is open
        finally:
            await other.stop()
        await sandbox.update_egress({"allow": ["allowed.test"], "ports": [80]})

        # bad policies: a clear 4xx, and the policy in force stays
        rock = httpx.Client(base_url=egress_admin.url + PREFIX, timeout=60, headers=AUTH)
        url = f"/sandboxes/{sandbox.sandbox_id}/egress"
        for bad in ({"allow": ["bad host!"]}, {"allow": ["10.0.0.0/33"]}, {"ports": [70000]},
                    {"allow": ["a.test"], "extra": 1}):
            r = rock.post(url, json={"egress": bad})
            assert r.status_code == 422, (bad, r.text)
        for host in ("127.0.0.1", "localhost", internet.host_ip, "10.231.0.0/16"):
            r = rock.post(url, json={"egress": {"allow": [host]}})
            assert r.status_code == 400 and "never reachable" in r.text, (host, r.text)
        assert rock.post(f"/sandboxes/nope-{sandbox.sandbox_id}/egress", json={"egress": "all"}).status_code == 404
        other = rock.post(url, json={"egress": "all"}, headers={"Authorization": "Bearer e2b-token-b"})
        assert other.status_code == 404, other.text  # another namespace's sandbox is a missing one
        assert await _probe(sandbox, "http", "allowed.test", "80", "allowed.test") == f"hit {a['allowed.test']} allowed.test"

        # changed while it runs: now the other name and any port, not the first one
        await sandbox.update_egress({"allow": ["*.test"], "deny": ["allowed.test"]})
        assert await _probe(sandbox, "http", "denied.test", "8080", "denied.test") == f"hit {a['denied.test']} denied.test"
        assert (await _probe(sandbox, "http", "allowed.test", "80", "allowed.test")).startswith("unreachable")
        # TLS: the SNI decides, and the connection goes where our resolver puts that name
        assert await _probe(sandbox, "tls", "other.test", "other.test") == f"tls {a['other.test']} other.test"  # control
        sni_mismatch = await _probe(sandbox, "tls", a["allowed.test"], "other.test")
        assert sni_mismatch == f"tls {a['other.test']} other.test", sni_mismatch
        assert (await _probe(sandbox, "tls", a["other.test"], "allowed.test")).startswith("unreachable")
        assert (await _probe(sandbox, "tls", a["allowed.test"], "-")).startswith("unreachable")
        await sandbox.update_egress("none")
        assert (await _probe(sandbox, "http", "denied.test", "80", "denied.test")).startswith("unreachable")
        # the CLI's way: an allow list on the command line
        cli = subprocess.run([sys.executable, "-m", "rock.cli.main", "sandbox", "--url", egress_admin.url, "--token",
                              "e2b-token-a", "egress", sandbox.sandbox_id, "other.test,*.nowhere.test"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": SRC})
        assert cli.returncode == 0, cli.stderr
        assert await _probe(sandbox, "http", "other.test", "80", "other.test") == f"hit {a['other.test']} other.test"
        # restored in place, the sandbox keeps its gate and the policy in force (a new network namespace)
        snap = await sandbox.snapshot()
        await sandbox.restore(snap.name)
        assert await _probe(sandbox, "http", "other.test", "80", "other.test") == f"hit {a['other.test']} other.test"
        assert (await _probe(sandbox, "http", "denied.test", "80", "denied.test")).startswith("unreachable")
        assert (await _probe(sandbox, "http", a["denied.test"], "80", a["denied.test"])).startswith("unreachable")
    finally:
        await sandbox.stop()
    # the sandbox's link went with it
    link = links.link_name(egress_admin.ctx.worker.egress.owner_key, sandbox.sandbox_id)
    assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode != 0


def test_e2b_sdk_network(egress_admin, internet, tmp_path):
    """E2B's ``network`` and ``update_network`` through the unmodified SDK (e2b 2.63's wire)."""
    from tests.e2b.test_e2b_sdk import e2b_python, run_scenario

    os.environ["ALLOWED"], os.environ["DENIED"] = internet.addresses["allowed.test"], internet.addresses["denied.test"]
    try:
        run_scenario(e2b_python("newest"), egress_admin, "../security/scenario_e2b_network.py", "E2B NETWORK OK",
                     tmp_path)
    finally:
        os.environ.pop("ALLOWED"), os.environ.pop("DENIED")


async def test_start_refuses_bad_policies(egress_admin):
    rock = httpx.Client(base_url=egress_admin.url + PREFIX, timeout=60, headers=AUTH)
    for body, code in (({"egress": {"allow": ["*.*.bad"]}}, 422), ({"egress": {"deny": ["300.1.1.1/8"]}}, 422),
                       ({"egress": {"allow": ["127.0.0.0/8"]}}, 400), ({"egress": "all", "network": True}, 400),
                       ({"egress": {"ports": ["9-1"]}}, 422)):
        r = rock.post("/start_async", json={"memory": "512m", "cpus": 1, **body})
        assert r.status_code == code, (body, r.text)


FETCH = ("python3 -c \"import sys, urllib.request\ntry:\n print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
         "\nexcept Exception as exc:\n print('unreachable', type(exc).__name__)\" ")
PHASES_TEST_SH = f"""#!/bin/bash
mkdir -p /logs/verifier
mine=$({FETCH} http://denied.test/)
theirs=$({FETCH} http://allowed.test/)
agent=$(cat /workspace/fetched.txt)
echo "verifier: $mine / $theirs; agent: $agent"
case "$agent|$mine|$theirs" in
  "hit "*" allowed.test unreachable"*"|hit "*" denied.test|unreachable"*) echo 1 > /logs/verifier/reward.txt;;
  *) echo 0 > /logs/verifier/reward.txt;;
esac
"""


async def test_harbor_task_policies_per_phase(egress_admin, tmp_path):
    """A Harbor task whose agent may reach allowed.test only and whose verifier may reach
    denied.test only: the oracle's solve.sh (in the agent's sandbox) records what it reached, the
    hidden tests (in the verifier's) check both phases; reward 1 only if each reached its own host
    and not the other's."""
    from rock.agentic.tasks import load_task
    from rock.agentic.tasks.rollout import RolloutOptions, rollout
    from tests.agentic_tasks.conftest import harbor_task

    t = harbor_task(tmp_path, "net-phases", test_sh=PHASES_TEST_SH)
    (t / "solution" / "solve.sh").write_text(
        f"#!/bin/bash\n{{ {FETCH} http://allowed.test/; {FETCH} http://denied.test/; }} | tr '\\n' ' ' > /workspace/fetched.txt\n")
    (t / "task.toml").write_text(
        'version = "1.0"\n[environment]\ndocker_image = "python:3.11"\nnetwork_mode = "no-network"\n'
        '[agent]\ntimeout_sec = 60.0\nnetwork_mode = "allowlist"\nallowed_hosts = ["allowed.test"]\n'
        '[verifier]\ntimeout_sec = 60.0\nnetwork_mode = "allowlist"\nallowed_hosts = ["denied.test"]\n')
    rec = await rollout(load_task(t), RolloutOptions(base_url=egress_admin.url, token="e2b-token-a", policy="oracle"))
    assert rec.reward == 1.0, rec
