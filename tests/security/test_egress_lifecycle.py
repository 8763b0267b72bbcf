"""A gated sandbox stays gated through its lifecycle, and a policy change reaches what is open.

Against the small internet of ``egress_internet`` (``allowed.test``, ``denied.test``,
``other.test``), on docker and bwrap:

- a fork and a start from a snapshot get the policy in force when the snapshot was taken (also
  after a change while the parent ran), a start from a snapshot may name its own; an admin
  restart gives every running gated sandbox its gate and policy again;
- a policy change cuts the open connections it denies and keeps the ones it allows;
- IPv6: no AAAA answer, no IPv6 literal reaches the internet or the host, even after the
  sandbox tries to turn IPv6 on for its interface.

Each attempt sits beside a control that shows the same request passing where it is allowed (or
the target answering the host).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading

import httpx
import pytest

from rock.actions import CreateBashSessionRequest
from rock.admin.context import PREFIX
from rock.runtime.egress import links
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.admin.harness import Admin, backend_params
from tests.security.egress_internet import Internet
# the same small internet and admin per backend as the red team, one of each for this module
from tests.security.test_egress import E2B_TOKENS, PROBE, egress_admin, internet  # noqa: F401

TOKEN = "e2b-token-a"

# Two connections held open by name (argv: names); each echoes a line once they are up
# ("ready"), then again when /tmp/go appears: "<name> ping" where it still passes, else "<name> cut".
HOLD = r"""
import os, socket, sys, time
conns = {}
for name in sys.argv[1:]:
    s = socket.create_connection((name, 80), timeout=10)
    s.sendall(f"GET /echo HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
    f = s.makefile("rwb")
    while f.readline() not in (b"\r\n", b""):
        pass
    conns[name] = f

def ping():
    out = []
    for name, f in conns.items():
        try:
            f.write(b"ping\n"); f.flush()
            line = f.readline().decode().strip()
        except OSError:
            line = ""
        out.append(f"{name} {line or 'cut'}")
    return "; ".join(out)

open("/tmp/ready.tmp", "w").write(ping()); os.rename("/tmp/ready.tmp", "/tmp/ready")
for _ in range(600):
    if os.path.exists("/tmp/go"):
        break
    time.sleep(0.05)
open("/tmp/after.tmp", "w").write(ping()); os.rename("/tmp/after.tmp", "/tmp/after")
"""

# IPv6 from inside: argv[1] an AAAA question for a name to our resolver at argv[2]; then the
# sandbox tries to turn IPv6 on for its interface and dials each [address]:port of argv[3:].
V6 = r"""
import socket, sys
def question(name, qtype):
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
        bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + qtype + b"\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(q, (sys.argv[2], 53)); r = s.recvfrom(4096)[0]
    return f"rcode {r[3] & 15} answers {int.from_bytes(r[6:8], 'big')}"
print("A", question(sys.argv[1], b"\x00\x01"))
print("AAAA", question(sys.argv[1], b"\x00\x1c"))
try:
    socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET6)
    print("getaddrinfo6 answered")
except OSError as exc:
    print("getaddrinfo6 none", type(exc).__name__)
for path in ("all", "default", "eth0"):
    try:
        open(f"/proc/sys/net/ipv6/conf/{path}/disable_ipv6", "w").write("0")
        print("enabled", path)
    except OSError as exc:
        print("enable refused", path, type(exc).__name__)
for target in sys.argv[3:]:
    host, port = target.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        print(target, "answered", s.recv(4096)[-40:])
    except OSError as exc:
        print(target, "unreachable", type(exc).__name__)
"""


def _config(url: str, **extra) -> SandboxConfig:
    return SandboxConfig(base_url=url, token=TOKEN, memory="512m", cpus=1, **extra)


async def _get(sandbox: Sandbox, name: str, port: int = 80) -> str:
    """``hit <address> <Host>`` from ``name``:``port`` (by name, our resolver's answer), or why not."""
    await sandbox.write_bytes("/tmp/probe.py", PROBE.encode())
    return (await sandbox.arun(f"python3 /tmp/probe.py http {name} {port} {name}")).output.strip()


async def _wait_file(sandbox: Sandbox, path: str) -> str:
    for _ in range(200):  # bounded: 20 s
        out = (await sandbox.arun(f"cat {path} 2>/dev/null || true")).output.strip()
        if out:
            return out
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never appeared in the sandbox")


async def _reaches_only(sandbox: Sandbox, internet: Internet, allowed: str, denied: str) -> None:
    a = internet.addresses
    assert await _get(sandbox, allowed) == f"hit {a[allowed]} {allowed}"  # control
    assert (await _get(sandbox, denied)).startswith("unreachable")
    literal = (await sandbox.arun(f"python3 /tmp/probe.py http {a[denied]} 80 {a[denied]}")).output.strip()
    assert literal.startswith("unreachable"), literal


async def test_forks_and_snapshot_starts_keep_the_policy_in_force(egress_admin, internet):
    parent = Sandbox(_config(egress_admin.url, egress={"allow": ["allowed.test"], "ports": [80]}))
    await parent.start()
    started: list[Sandbox] = []
    snap = None
    try:
        await parent.write_bytes("/tmp/probe.py", PROBE.encode())
        await _reaches_only(parent, internet, "allowed.test", "other.test")
        # changed while it runs: the children get this one, not the one it was started with
        await parent.update_egress({"allow": ["other.test"], "ports": [80]})
        await _reaches_only(parent, internet, "other.test", "allowed.test")
        children = await parent.fork(1)
        started += children
        await _reaches_only(children[0], internet, "other.test", "allowed.test")
        snap = await parent.snapshot()
        from_snap = Sandbox(_config(egress_admin.url, snapshot=snap.name))
        await from_snap.start()
        started.append(from_snap)
        await _reaches_only(from_snap, internet, "other.test", "allowed.test")
        # the record says what the sandbox runs under (a later restart of it asks for it again)
        for box in (children[0], from_snap):
            record = egress_admin.ctx.sandboxes.known(box.sandbox_id)
            assert record.spec["egress"]["allow"] == ["other.test"], record.spec
        # a start from the snapshot that names its own policy runs under that one
        own = Sandbox(_config(egress_admin.url, snapshot=snap.name, egress={"allow": ["denied.test"]}))
        await own.start()
        started.append(own)
        await _reaches_only(own, internet, "denied.test", "other.test")
        # ... and one that names the host is refused like any start
        rock = httpx.Client(base_url=egress_admin.url + PREFIX, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})
        r = rock.post("/start_async", json={"snapshot": snap.name, "egress": {"allow": ["127.0.0.1"]}})
        assert r.status_code == 400 and "never reachable" in r.text, r.text
    finally:
        await asyncio.gather(*(box.stop() for box in [parent, *started]), return_exceptions=True)
        if snap is not None:
            await _delete_snapshot(egress_admin, snap.name)


async def _delete_snapshot(admin: Admin, name: str) -> None:
    """Delete a snapshot once the sandboxes started from it are gone (docker: an engine image they
    ran on, whose containers' removal finishes in the background)."""
    async with httpx.AsyncClient(base_url=admin.url + PREFIX, timeout=60,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as rock:
        for _ in range(50):  # bounded: about 10 s
            if (await rock.delete(f"/snapshots/{name}")).status_code != 409:
                return
            await asyncio.sleep(0.2)


async def test_a_policy_change_cuts_the_connections_it_denies(egress_admin, internet):
    sandbox = Sandbox(_config(egress_admin.url, egress={"allow": ["allowed.test", "other.test"], "ports": [80]}))
    await sandbox.start()
    try:
        await sandbox.write_bytes("/tmp/hold.py", HOLD.encode())
        await sandbox.create_session(CreateBashSessionRequest(session="hold"))
        await sandbox.arun("nohup python3 /tmp/hold.py allowed.test other.test >/tmp/hold.log 2>&1 &", session="hold")
        # control: both connections are up and carry data through the gate
        assert await _wait_file(sandbox, "/tmp/ready") == "allowed.test ping; other.test ping"
        await sandbox.update_egress({"allow": ["other.test"], "ports": [80]})
        await sandbox.write_bytes("/tmp/go", b"")
        assert await _wait_file(sandbox, "/tmp/after") == "allowed.test cut; other.test ping"
        # new connections follow the policy too
        await _reaches_only(sandbox, internet, "other.test", "allowed.test")
    finally:
        await sandbox.stop()


async def test_ipv6_is_closed(egress_admin, internet):
    """No AAAA answers (the A of the same name answers), no IPv6 literal out: the internet's IPv6
    address and a listener of the host's on every interface both answer the host (controls)."""
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    listener.bind(("::", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"host-v6-marker")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    sandbox = Sandbox(_config(egress_admin.url, egress="all"))
    await sandbox.start()
    try:
        assert httpx.get(f"http://[{internet.ns_ip6}]/", timeout=5).text.startswith("hit")  # control
        with socket.create_connection(("::1", port), timeout=5) as c:  # control
            assert c.recv(64) == b"host-v6-marker"
        link = links.link_name(egress_admin.ctx.worker.egress.owner_key, sandbox.sandbox_id)
        shown = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", link, "scope", "link"],
                               capture_output=True, text=True).stdout.split()
        targets = [f"{internet.ns_ip6}:80", f"::1:{port}"]
        if "inet6" in shown:  # the host's end of the link, by its link-local address
            targets.append(f"{shown[shown.index('inet6') + 1].split('/')[0]}%eth0:{port}")
        await sandbox.write_bytes("/tmp/v6.py", V6.encode())
        out = (await sandbox.arun("python3 /tmp/v6.py allowed.test 192.0.2.53 " + " ".join(targets))).output
        lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
        assert lines["A"] == "rcode 0 answers 1", out  # control: the name resolves
        assert lines["AAAA"] == "rcode 0 answers 0", out
        assert lines["getaddrinfo6"].startswith("none"), out
        for target in targets:
            assert lines[target].startswith("unreachable"), out
        assert "hit" not in out and "marker" not in out, out
        assert await _get(sandbox, "allowed.test") == f"hit {internet.addresses['allowed.test']} allowed.test"
    finally:
        listener.close()
        await sandbox.stop()


@pytest.mark.parametrize("backend", backend_params())
def test_admin_restart_gives_every_gated_sandbox_its_gate_again(backend, internet):
    first = Admin(backend, egress_hosts=internet.addresses, tokens=E2B_TOKENS).start()
    second = None
    boxes: list[Sandbox] = []
    try:
        async def before():
            one = Sandbox(_config(first.url, egress={"allow": ["allowed.test"]}))
            two = Sandbox(_config(first.url, egress={"allow": ["allowed.test"]}))
            boxes.extend([one, two])
            await asyncio.gather(one.start(), two.start())
            await two.update_egress({"allow": ["other.test"]})  # the policy in force, not the first
            await _reaches_only(one, internet, "allowed.test", "other.test")
            await _reaches_only(two, internet, "other.test", "allowed.test")
            for box in boxes:
                await box.aclose()

        asyncio.run(before())
        first.stop()  # the sandboxes run on; the worker's links and table go with it
        second = Admin(backend, state_dir=first.state_dir, egress_hosts=internet.addresses, tokens=E2B_TOKENS).start()

        async def after():
            one, two = (Sandbox(_config(second.url)) for _ in range(2))
            await one.attach(boxes[0].sandbox_id)
            await two.attach(boxes[1].sandbox_id)
            await _reaches_only(one, internet, "allowed.test", "other.test")
            await _reaches_only(two, internet, "other.test", "allowed.test")
            await asyncio.gather(one.stop(), two.stop())

        asyncio.run(after())
    finally:
        if second is None and first.server is None:  # stopped, and the new one never came up: one to clean up
            second = Admin(backend, state_dir=first.state_dir, egress_hosts=internet.addresses, tokens=E2B_TOKENS).start()
        (second or first).stop(stop_sandboxes=True)
