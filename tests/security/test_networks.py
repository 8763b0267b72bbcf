"""Red team: a docker sandbox with a network reaches neither another tenant's sandbox nor the host.

On the engine's default bridge, tenant B's sandbox called a server in tenant A's sandbox (a model
endpoint bound to 0.0.0.0 took B's calls into A's trainer queue) and a host service on the
bridge's gateway. Each attempt here asserts that its marker never comes back, with a control in
the same test: A's own sandbox reaches its server, and the host reaches its services.

Only addresses this test made are probed: the sandboxes' own, and the host's on the bridge the
sandboxes were put on (their default gateway) and on the engine's default bridge. bwrap
sandboxes have no network of the host's unless the operator allows it (allow_host_network):
tests/envs/test_trust.py and the runtime tests cover that refusal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import sys
import uuid

import docker
import pytest

from rock.actions import CreateBashSessionRequest
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.admin.harness import Admin
from tests.security.egress_internet import HTTP_SERVER, free_link
from tests.security.secret_server import SecretServer

TENANTS = {"token-net-a": "net-a", "token-net-b": "net-b"}
PORT = 8765

FETCH = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())
except Exception as exc:
    print("unreachable:", type(exc).__name__, exc)
"""

# The outside's server: ``python -m http.server`` of a folder (argv[2]) on port 80 of an address
# (argv[1]), made without a name lookup (HTTP_SERVER).
FILES = HTTP_SERVER + r"""
import functools, sys
from http.server import SimpleHTTPRequestHandler

Server((sys.argv[1], 80), functools.partial(SimpleHTTPRequestHandler, directory=sys.argv[2])).serve_forever()
"""


@pytest.fixture(scope="module")
def net_admin():
    server = Admin("docker", tokens=TENANTS).start()
    yield server
    server.stop(stop_sandboxes=True)


async def _fetch(sandbox: Sandbox, url: str) -> str:
    await sandbox.write_bytes("/tmp/fetch.py", FETCH.encode())
    return (await sandbox.arun(f"python3 /tmp/fetch.py {url}")).output.strip()


async def _address(sandbox: Sandbox) -> str:
    return (await sandbox.arun("hostname -i")).output.split()[0]


async def _gateway(sandbox: Sandbox) -> str:
    """The sandbox's default gateway, read from its own routing table: the host's address on the
    bridge the sandbox is on."""
    for line in (await sandbox.arun("cat /proc/net/route")).output.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    raise AssertionError("the sandbox has no default route")


def _default_bridge_gateway() -> str:
    from tests.security.test_builds import _gateway as engine_gateway

    return engine_gateway()


@pytest.fixture
def outside(tmp_path):
    """A stand-in for the internet: a network namespace this test makes, joined to the host by a
    veth pair on a /30 of TEST-NET-2 (198.51.100.0/24, documentation only), serving a marker.
    Sandboxes reach it through the host's routing and NAT, as they would a server outside."""
    import subprocess
    import time

    tag = uuid.uuid4().hex[:6]
    ns, host_if, peer = f"h3out{tag}", f"h3o{tag}", f"h3p{tag}"
    host_ip, ns_ip = free_link()
    marker = f"outside-{uuid.uuid4().hex}"
    (tmp_path / "marker.txt").write_text(marker)

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    server = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer, "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", peer)
        ip("-n", ns, "link", "set", peer, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "route", "add", "default", "via", host_ip)
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", FILES, ns_ip, str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{ns_ip}/marker.txt"
        deadline = time.monotonic() + 30
        while subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", FETCH, url], capture_output=True,
                             text=True).stdout.strip() != marker:
            assert time.monotonic() < deadline and server.poll() is None, "the outside server did not come up"
            time.sleep(0.1)
        yield url, marker
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the veth pair with it


@pytest.mark.docker
async def test_tenants_sandboxes_and_the_host_are_out_of_reach(net_admin, outside):
    marker = f"a-endpoint-{uuid.uuid4().hex}"
    alice = Sandbox(SandboxConfig(base_url=net_admin.url, token="token-net-a", network=True, memory="512m", cpus=1))
    bob = Sandbox(SandboxConfig(base_url=net_admin.url, token="token-net-b", network=True, memory="512m", cpus=1))
    await asyncio.gather(alice.start(), bob.start())
    host_servers: list[SecretServer] = []
    try:
        # Alice serves a marker on all her addresses, as an endpoint allowed 0.0.0.0 would
        await alice.write_bytes("/srv/endpoint/marker.txt", marker.encode())
        await alice.create_session(CreateBashSessionRequest(session="srv"))
        await alice.arun(f"cd /srv/endpoint && nohup python3 -m http.server {PORT} --bind 0.0.0.0 "
                         ">/dev/null 2>&1 &", session="srv")
        a_url = f"http://{await _address(alice)}:{PORT}/marker.txt"
        seen = ""
        for _ in range(50):  # control: her own sandbox reaches her server once it listens
            seen = await _fetch(alice, a_url)
            if seen == marker:
                break
            await asyncio.sleep(0.2)
        assert seen == marker, seen
        assert ipaddress.ip_address(a_url.split("/")[2].split(":")[0]) != ipaddress.ip_address(await _address(bob))

        # control: Bob's network works, out through the host, to a server outside it
        out_url, out_marker = outside
        assert await _fetch(bob, out_url) == out_marker

        got = await _fetch(bob, a_url)
        assert marker not in got and got.startswith("unreachable:"), got

        # the host: a service on the bridge's gateway (where the sandbox's traffic enters the
        # host) and one on the engine's default bridge address
        for host in sorted({await _gateway(bob), _default_bridge_gateway()}):
            server = SecretServer(host, "host-service")
            host_servers.append(server)
            server.control()  # control: the host reaches it
            got = await _fetch(bob, server.url)
            assert server.secret not in got and got.startswith("unreachable:"), (host, got)
            assert server.hits == []
    finally:
        for server in host_servers:
            server.close()
        await asyncio.gather(alice.delete(), bob.delete())


@pytest.mark.docker
def test_the_sandboxes_network_keeps_its_fence():
    """The network sandboxes join: the engine's inter-container switch off, and the host's rules
    for its bridge loaded (what the test above depends on, named, so a change shows here)."""
    import subprocess

    from rock.runtime.docker import network as docker_network

    docker_network.ensure(docker.from_env().api, ["169.254.0.0/16"])
    info = docker.from_env().api.inspect_network(docker_network.NETWORK)
    assert info["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    table = subprocess.run(["nft", "list", "table", "inet", docker_network.TABLE], capture_output=True, text=True)
    assert table.returncode == 0 and f'iifname "{docker_network.BRIDGE}" drop' in table.stdout, table.stderr
