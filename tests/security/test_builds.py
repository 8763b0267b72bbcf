"""Red team: a token holder's image build must not make the Docker engine fetch from the host.

The engine's daemon fetches ``ADD <url>`` itself, in the host's network namespace, and a sandbox
of the image then reads what came back. Each attempt points at an HTTP server on the host's
loopback that counts who asked; it must never be asked and its secret never come back. The
control in the same test: the server answers the host, and the same build with the URL replaced
by a file of the context succeeds, so the attempt went through the real build path.

Builds are the engine's whatever the sandbox backend (bwrap unpacks the built image), so these
run on the docker backend only.
"""

from __future__ import annotations

import io
import tarfile
import uuid

import docker
import httpx
import pytest

from tests.admin.harness import Admin
from tests.security.secret_server import SecretServer

BUILD = "/apis/envs/sandbox/v1/images/build"
TOKEN = "token-builder"
TAR = {"content-type": "application/x-tar"}


@pytest.fixture(scope="module")
def build_admin():
    server = Admin("docker", tokens={TOKEN: "builder", "token-builder-b": "builder-b"}).start()
    yield server
    server.stop(stop_sandboxes=True)


@pytest.fixture
def builder(build_admin):
    with httpx.Client(base_url=build_admin.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as c:
        yield c


@pytest.fixture
def loopback_server():
    server = SecretServer("127.0.0.1")
    yield server
    server.close()


def _tar(*members: tuple) -> bytes:
    """A build context; each member is (name, text) for a file or (name, None, link) for a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member in members:
            info = tarfile.TarInfo(member[0])
            if member[1] is None:
                info.type, info.linkname = tarfile.SYMTYPE, member[2]
                tar.addfile(info)
            else:
                data = member[1].encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _build(client, context: bytes, **params):
    return client.post(BUILD, content=context, params={"tag": f"sec-build-{uuid.uuid4().hex[:8]}:v1", **params},
                       headers=TAR)


def _remove_built(reply) -> None:
    if reply.status_code == 200:
        docker.from_env().images.remove(reply.json()["result"]["image"], force=True)


LOCAL = "local.txt"
# Each: the context with {src} where the ADD's source goes. The attack puts the loopback URL (or a
# variable holding it) there; the control puts a file of the context (through COPY where the
# source is a variable: an ADD source may not be one, COPY never fetches).
ATTACKS = {
    "arg": "Dockerfile=FROM python:3.11\nARG U={src}\n{add} $U /s\n",
    "env": "Dockerfile=FROM python:3.11\nENV U={src}\n{add} ${{U}} /s\n",
    "symlinked-dockerfile": "real=FROM python:3.11\n{add} {src} /s\n|Dockerfile->real",
    "second-member": "Dockerfile=FROM python:3.11\n|Dockerfile=FROM python:3.11\n{add} {src} /s\n",
    "lower-case": "dockerfile=FROM python:3.11\n{add} {src} /s\n",
    "escape-directive": "Dockerfile=# escape=`\nFROM python:3.11\n{add} `\n  {src} /s\n",
    "onbuild-in-a-stage": "Dockerfile=FROM python:3.11 AS base\nONBUILD {add} {src} /s\nFROM base\n",
}


def _context(attack: str, src: str, add: str) -> bytes:
    members = []
    for part in ATTACKS[attack].format(src=src, add=add).split("|"):
        name, sep, text = part.partition("=")
        members.append((name, text) if sep and "->" not in name else (*part.split("->")[:1], None, part.split("->")[1]))
    return _tar(*members, (LOCAL, "ok"))


@pytest.mark.docker
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_build_never_fetches_from_the_hosts_loopback(builder, loopback_server, attack):
    loopback_server.control()
    reply = _build(builder, _context(attack, loopback_server.url, "ADD"))
    try:
        assert reply.status_code == 400, reply.text
        assert "line" in reply.json()["message"] and "ADD" in reply.json()["message"], reply.text
        assert loopback_server.hits == [] and loopback_server.secret not in reply.text
    finally:
        _remove_built(reply)
    control = _build(builder, _context(attack, LOCAL, "COPY" if attack in ("arg", "env") else "ADD"))
    try:
        assert control.status_code == 200, control.text
    finally:
        _remove_built(control)


@pytest.fixture
def onbuild_base(loopback_server):
    """A base image with ONBUILD triggers that fetch from the loopback server, made straight in the
    engine (as an image pulled from a registry would be), and one with a harmless trigger."""
    engine = docker.from_env()
    tags = {}
    for kind, trigger in (("url", f"ONBUILD ADD {loopback_server.url} /s"), ("var", f"ENV U={loopback_server.url}\nONBUILD ADD $U /s"),
                          ("plain", "ONBUILD RUN echo trigger")):
        tag = f"sec-onbuild-{kind}-{uuid.uuid4().hex[:8]}:v1"
        context = io.BytesIO(_tar(("Dockerfile", f"FROM python:3.11\n{trigger}\n")))
        engine.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
        tags[kind] = tag
    yield tags
    for tag in tags.values():
        engine.images.remove(tag, force=True)


@pytest.mark.docker
def test_a_bases_onbuild_add_never_fetches_from_the_hosts_loopback(builder, loopback_server, onbuild_base):
    loopback_server.control()
    for dockerfile in (f"FROM {onbuild_base['url']}\n", f"FROM {onbuild_base['var']}\n",
                       f"ARG B={onbuild_base['url']}\nFROM ${{B}} AS one\nFROM one\n"):
        reply = _build(builder, _tar(("Dockerfile", dockerfile)))
        try:
            assert reply.status_code == 400 and "ONBUILD" in reply.json()["message"], reply.text
            assert "line 1" in reply.json()["message"] or "line 2" in reply.json()["message"], reply.text
        finally:
            _remove_built(reply)
    assert loopback_server.hits == []
    control = _build(builder, _tar(("Dockerfile", f"ARG B={onbuild_base['plain']}\nFROM ${{B}} AS one\nFROM one\n")))
    try:
        assert control.status_code == 200, control.text
    finally:
        _remove_built(control)


def _gateway() -> str:
    """The host's address on the engine's default bridge: where a build container would find
    the host's services if its RUN steps had the default network."""
    import ipaddress
    import subprocess

    bridge = docker.from_env().networks.get("bridge").attrs
    config = bridge["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return config["Gateway"]
    device = bridge["Options"].get("com.docker.network.bridge.name", "docker0")
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", device], capture_output=True, text=True).stdout
    address = out.split(" inet ", 1)[1].split("/", 1)[0]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(config["Subnet"])
    return address


def _read_from_image(image: str, path: str) -> str:
    """A file of an image, read from its filesystem (a created, never started container): the
    output of `containers.run` came back empty once under load (the engine's log race)."""
    import io
    import tarfile

    container = docker.from_env().containers.create(image, ["true"], network_mode="none")
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            return tar.extractfile(tar.getmembers()[0]).read().decode()
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_run_steps_have_no_network_of_the_host(builder):
    host_side = SecretServer(_gateway())
    try:
        host_side.control()
        probe = ("import urllib.request\n"
                 "try:\n"
                 f"    out = urllib.request.urlopen({host_side.url!r}, timeout=5).read().decode()\n"
                 "except Exception as exc:\n"
                 "    out = 'unreachable: ' + type(exc).__name__\n"
                 "open('/probe.txt', 'w').write(out)\n")
        reply = _build(builder, _tar(("Dockerfile", "FROM python:3.11\nCOPY probe.py /\nRUN python3 /probe.py\n"),
                                     ("probe.py", probe)))
        try:
            assert reply.status_code == 200, reply.text
            out = _read_from_image(reply.json()["result"]["image"], "/probe.txt")
            assert out.startswith("unreachable: "), out  # control: the RUN step ran and said what it saw
            assert host_side.secret not in out and host_side.hits == []
        finally:
            _remove_built(reply)
    finally:
        host_side.close()
