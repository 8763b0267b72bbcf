"""The trust boundary, through a real admin with tokens on, on docker and bwrap: nothing a caller
names runs on the host, and no sandbox sees the host's files unless the operator allows it.

Each test tries what a hostile token holder would (an import that is code, a package whose
build runs code, a direct URL, the host root as an image) and checks the host afterwards: no
marker file appears on it, and no host file's content comes back.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from tests.admin.harness import Admin, backend_params
from tests.security.secret_server import SecretServer

TOKEN = "token-trust"
OTHER = "token-other"
GYM = "/apis/v1/envs/gym"
START = "/apis/envs/sandbox/v1/start_async"


@pytest.fixture(scope="module", params=backend_params())
def secured(request):
    server = Admin(request.param, tokens={TOKEN: "trust", OTHER: "other"}).start()
    yield server
    server.stop(stop_sandboxes=True)


@pytest.fixture
def client(secured):
    with httpx.Client(base_url=secured.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as c:
        yield c


@pytest.fixture
def host_files(tmp_path_factory):
    """Where hostile code would leave its marks on the host, and a host secret it would read."""
    tag = uuid.uuid4().hex[:10]
    marks = {name: Path(f"/tmp/rock-trust-{tag}-{name}") for name in ("import", "build", "module")}
    secret = Path(f"/tmp/rock-trust-{tag}-secret")
    content = f"host-secret-{uuid.uuid4().hex}"
    secret.write_text(content)
    yield marks, secret, content
    for path in [*marks.values(), secret]:
        path.unlink(missing_ok=True)


def _image_stream(client, body: dict) -> tuple[int, list[dict]]:
    """POST gym/images: its status, and its NDJSON lines (progress, then the image or an error)."""
    with client.stream("POST", GYM + "/images", json=body) as reply:
        lines = [json.loads(line) for line in reply.iter_lines() if line.strip()] if reply.status_code == 200 else \
            [json.loads(reply.read())]
        return reply.status_code, lines


def test_an_import_that_is_code_is_refused_and_never_runs(client, host_files):
    marks, secret, content = host_files
    code = f"os; open({str(marks['import'])!r}, 'w').write(open({str(secret)!r}).read())"
    for route, body in [(GYM + "/images", {"source": "CartPole-v1", "imports": [code]}),
                        (GYM + "/sessions", {"source": "CartPole-v1", "imports": [code]})]:
        reply = client.post(route, json=body)
        assert reply.status_code == 400, reply.text
        assert "not a module name" in reply.text and content not in reply.text
    assert not marks["import"].exists()


@pytest.mark.parametrize("package", [
    "evil @ https://example.invalid/evil-1.0.tar.gz",
    "https://example.invalid/evil-1.0-py3-none-any.whl",
    "evil @ file:///etc",
    "/etc",
    "./evil",
])
def test_direct_requirements_are_refused_by_default(client, package):
    status, lines = _image_stream(client, {"source": "CartPole-v1", "packages": ["gymnasium", package]})
    assert status == 400, lines
    assert "allow_direct_requirements" in lines[0]["message"]


@pytest.mark.parametrize("package", ["numpy; import os", "numpy>=1 --index-url http://x", "numpy==1.0 \nsix"])
def test_what_is_not_a_requirement_is_refused(client, package):
    status, lines = _image_stream(client, {"source": "CartPole-v1", "packages": [package]})
    assert status == 400 and "requirement" in lines[0]["message"], lines


def test_a_caller_cannot_raise_the_build_limits(client):
    status, lines = _image_stream(client, {"source": "CartPole-v1", "build_memory": "1000g"})
    assert status == 400 and "build_memory" in lines[0]["message"], lines


def _build_containers(admin) -> list:
    """The containers of the admin's build sandboxes (they run on the docker engine's runtime)."""
    import docker

    owner = admin.app.state.rock.gym.builder.runtime().owner
    return docker.from_env().containers.list(all=True, filters={"label": f"rock.owner={owner}"})


def _hostile_package(root: Path, marks: dict, secret: Path) -> Path:
    """A source package whose build writes a marker and reads the host secret into its data, and
    whose import writes another marker and fails, quoting what its build and it could read: it
    stands in for a hostile package on the index."""
    pkg = root / "rock_trust_probe"
    (pkg / "rock_trust_probe").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\n'
                                        'build-backend = "setuptools.build_meta"\n')
    (pkg / "setup.py").write_text(textwrap.dedent(f"""
        import os, setuptools
        open({str(marks['build'])!r}, "w").write(str(os.getuid()))
        try:
            seen = open({str(secret)!r}).read()
        except OSError:
            seen = "unreadable"
        with open(os.path.join("rock_trust_probe", "probe.txt"), "w") as f:
            f.write("build-uid=%d build-saw=%s" % (os.getuid(), seen))
        setuptools.setup(name="rock-trust-probe", version="0.1", packages=["rock_trust_probe"],
                         package_data={{"rock_trust_probe": ["probe.txt"]}})
    """))
    (pkg / "rock_trust_probe" / "__init__.py").write_text(textwrap.dedent(f"""
        import os
        open({str(marks['module'])!r}, "w").write(str(os.getuid()))
        try:
            seen = open({str(secret)!r}).read()
        except OSError:
            seen = "unreadable"
        built = open(os.path.join(os.path.dirname(__file__), "probe.txt")).read()
        raise ImportError("probe: %s import-uid=%d import-saw=%s" % (built, os.getuid(), seen))
    """))
    return pkg


def test_a_package_build_and_its_import_run_in_sandboxes_only(secured, client, host_files, tmp_path, monkeypatch):
    """Local paths allowed (the operator's setting) so the package reaches the build: its setup.py
    and its import run, as nobody, in the build sandbox and in a sandbox of the image."""
    marks, secret, content = host_files
    monkeypatch.setattr(secured.ctx.settings, "allow_direct_requirements", True)
    pkg = _hostile_package(tmp_path, marks, secret)
    status, lines = _image_stream(client, {"source": "CartPole-v1", "packages": ["gymnasium", str(pkg)],
                                           "imports": ["rock_trust_probe"]})
    assert status == 200, lines
    error = lines[-1].get("error")
    assert error is not None and lines[-1]["status"] == 422, lines[-1]
    # Both ran (the build wrote its data, the import read it) as the build user, and saw no host file.
    assert "probe: build-uid=65534 build-saw=unreadable import-uid=65534 import-saw=unreadable" in error["message"]
    assert any("build sandbox" in line.get("progress", "") for line in lines)  # progress lines kept
    text = json.dumps(lines)
    assert content not in text
    for mark in marks.values():
        assert not mark.exists(), f"{mark} appeared on the host"
    assert _build_containers(secured) == []  # both sandboxes are gone


def test_a_build_that_hangs_is_stopped_at_the_time_limit(secured, client, tmp_path, monkeypatch):
    monkeypatch.setattr(secured.ctx.settings, "allow_direct_requirements", True)
    monkeypatch.setattr(secured.ctx.settings, "build_timeout", 8.0)
    pkg = tmp_path / "rock_trust_sleeper"
    pkg.mkdir()
    (pkg / "setup.py").write_text("import time\ntime.sleep(3600)\n")
    status, lines = _image_stream(client, {"source": "CartPole-v1", "packages": [str(pkg)]})
    assert status == 200 and lines[-1]["status"] == 422, lines[-1]
    assert "time limit" in lines[-1]["error"]["message"] and "build_timeout" in lines[-1]["error"]["message"]
    assert _build_containers(secured) == []


@pytest.mark.parametrize("image", ["/", "/etc", "/var/lib", "//"])
def test_host_paths_as_images_are_refused(client, image):
    reply = client.post(START, json={"image": image, "memory": "256m", "cpus": 0.5})
    assert reply.status_code == 400, reply.text
    assert "allow_host_paths" in reply.text


def test_a_network_on_bwrap_is_the_hosts_and_refused(secured, client):
    reply = client.post(START, json={"network": True, "memory": "256m", "cpus": 0.5})
    if secured.backend == "docker":  # a network namespace of its own
        assert reply.status_code == 200, reply.text
        client.post("/apis/envs/sandbox/v1/stop", json={"sandbox_id": reply.json()["result"]["sandbox_id"]})
    else:
        assert reply.status_code == 400 and "allow_host_network" in reply.text, reply.text


def test_a_registered_env_cannot_name_the_host_root(client):
    """The env service's sandboxes pass the same gate (a registered env's image is the caller's)."""
    env = {"id": f"trust-{uuid.uuid4().hex[:6]}", "entry_point": "os:getcwd", "image": "/"}
    reply = client.post("/apis/v1/envs/gem/register", json=env)
    try:
        if reply.status_code == 200:
            made = client.post("/apis/v1/envs/gem/make", json={"env_id": env["id"]})
            assert made.status_code == 400 and "allow_host_paths" in made.text, made.text
        else:
            assert reply.status_code in (400, 422), reply.text
    finally:
        client.post("/apis/v1/envs/gem/unregister", json={"id": env["id"]})


def test_a_namespace_cannot_replace_or_remove_anothers_registered_env(secured, client):
    """Whoever changes a registration chooses the code another namespace's env sandboxes run."""
    env = {"id": f"trust-{uuid.uuid4().hex[:6]}", "entry_point": "rock_gym_hostile:Hostile", "packages": ["gymnasium"]}
    assert client.post("/apis/v1/envs/gem/register", json=env).status_code == 200
    try:
        other = {"Authorization": f"Bearer {OTHER}"}
        hostile = {**env, "entry_point": "os:system"}
        reply = client.post("/apis/v1/envs/gem/register", json=hostile, params={"replace": True}, headers=other)
        assert reply.status_code == 400 and "another namespace" in reply.text, reply.text
        reply = client.post("/apis/v1/envs/gem/unregister", json={"id": env["id"]}, headers=other)
        assert reply.status_code == 400, reply.text
        listed = client.get("/apis/v1/envs/gem/catalog", params={"deep": False}).json()["envs"]
        assert [e["entry_point"] for e in listed if e["id"] == env["id"]] == [env["entry_point"]]
    finally:
        assert client.post("/apis/v1/envs/gem/unregister", json={"id": env["id"]}).json()["removed"]


def test_the_default_image_still_starts(client):
    reply = client.post(START, json={"memory": "256m", "cpus": 0.5, "wait": True})
    assert reply.status_code == 200, reply.text
    sid = reply.json()["result"]["sandbox_id"]
    try:
        out = client.post("/apis/envs/sandbox/v1/execute", json={"sandbox_id": sid, "command": ["cat", "/etc/hostname"]})
        assert out.status_code == 200 and os.uname().nodename not in out.json()["result"]["stdout"], out.text
    finally:
        client.post("/apis/envs/sandbox/v1/stop", json={"sandbox_id": sid})


@pytest.fixture
def loopback_secret():
    """An HTTP server on this host's loopback only (as a database, Ray or a metadata service would
    be), serving a secret and counting who asked."""
    server = SecretServer("127.0.0.1", "loopback-secret")
    yield server.url, server.secret, server.hits
    server.close()


def _context(dockerfile: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    return buf.getvalue()


@pytest.mark.parametrize("add", ["ADD {url} /secret", "ADD --chown=0:0 \\\n  {url} /secret", 'ADD ["{url}", "/secret"]'])
def test_an_image_build_cannot_make_the_engine_fetch_from_the_host(client, loopback_secret, add):
    """ADD <url> is fetched by the engine's daemon in the host's network namespace: it would reach
    the host's loopback services and put what they answer into the caller's image."""
    url, secret, hits = loopback_secret
    body = _context("FROM python:3.11\n" + add.format(url=url) + "\n")
    reply = client.post("/apis/envs/sandbox/v1/images/build", content=body,
                        params={"tag": f"trust-add-{uuid.uuid4().hex[:8]}:v1"}, headers={"content-type": "application/x-tar"})
    assert reply.status_code == 400 and "ADD from a URL" in reply.text, reply.text
    assert hits == [] and secret not in reply.text


@pytest.mark.parametrize("dockerfile", ["../Dockerfile", "/etc/passwd"])
def test_an_image_build_names_its_dockerfile_inside_the_context(client, dockerfile):
    reply = client.post("/apis/envs/sandbox/v1/images/build", content=_context("FROM python:3.11\n"),
                        params={"dockerfile": dockerfile}, headers={"content-type": "application/x-tar"})
    assert reply.status_code in (400, 422) and "root:" not in reply.text, reply.text


@pytest.mark.parametrize("backend", backend_params())
async def test_a_tampered_agent_socket_does_not_lead_the_worker_to_a_host_socket(backend, tmp_path):
    """A sandbox's root replaces its agent's socket (in the run folder it shares with the host) by
    a link to a host socket; after a worker restart the worker must not talk to what it finds."""
    import asyncio
    import socket

    from tests.worker.conftest import new_worker

    host_sock = f"/tmp/rock-trust-{uuid.uuid4().hex[:8]}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(host_sock)
    server.listen(4)
    server.setblocking(False)
    received: list[bytes] = []
    first = new_worker(backend)
    await first.start()
    try:
        sid = "t" + uuid.uuid4().hex[:10]
        await first.create(first.default_spec(sid))
        out = await first.agent(sid).exec(["sh", "-c", f'rm /.rock/run/agent.sock && ln -s {host_sock} '
                                           '/.rock/run/agent.sock && echo swapped'])
        assert out.stdout == "swapped\n", out
        await first.close(stop_sandboxes=False)
        second = new_worker(backend, state_dir=first.settings.state_dir)

        async def drain():
            loop = asyncio.get_running_loop()
            while True:
                conn, _ = await loop.sock_accept(server)
                with conn:
                    conn.setblocking(False)
                    try:
                        data = await asyncio.wait_for(loop.sock_recv(conn, 4096), 5)
                    except asyncio.TimeoutError:
                        data = b""
                    received.append(data)

        listener = asyncio.ensure_future(drain())
        try:
            await second.start()
            assert sid not in [s.sandbox_id for s in second.list()]  # not re-attached: treated as gone
            await asyncio.sleep(0.5)
        finally:
            listener.cancel()
            await second.close(stop_sandboxes=True)
        assert all(data == b"" for data in received), received  # the worker sent nothing to the host socket
    finally:
        server.close()
        os.unlink(host_sock)


@pytest.mark.parametrize("params", [{"size": 10**9}, {"size": "x"}, {"seed": "9" * 5000}])
def test_a_task_profile_cannot_size_the_admins_memory(params):
    """reasoning_gym's profile is a list made in the admin: its size is bounded, checked first."""
    import sys

    from rock.errors import TrainingError
    from rock.training.suites import ReasoningGym

    with pytest.raises(TrainingError, match="size must be") as err:
        ReasoningGym(sys.executable).ids(Path("/nonexistent"), "train", {"generators": ["basic_arithmetic"], **params})
    assert err.value.kind == "BadRequest"
