"""Fault tests: a real admin in its own process (so it can be killed with SIGKILL and started
again on the same state directory), driven over HTTP with bounded timeouts.

Every test here runs under an alarm: a fault that makes something hang fails the test with a
clear message instead of stalling the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from rock.admin.context import PREFIX
from rock.runtime import get_runtime_class
from tests.admin.harness import free_port, terminate, wait_healthy
from tests.conftest import SESSION_ROOT

TEST_LIMIT_S = 120  # no fault test may take longer than this, whatever hangs


@pytest.fixture(autouse=True)
def bounded():
    def expired(signum, frame):
        raise TimeoutError(f"the fault test ran past {TEST_LIMIT_S}s: something hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class AdminProcess:
    """``rock admin start --foreground`` as a child process on a fixed state dir and port."""

    def __init__(self, backend: str, state_dir: Path | None = None, env: dict[str, str] | None = None,
                 check_available: bool = True):
        if check_available and (reason := get_runtime_class(backend).available()):
            pytest.skip(f"{backend}: {reason}")
        self.backend = backend
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="f", dir=SESSION_ROOT))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.url + PREFIX, timeout=60)

    def start(self, timeout: float = 60) -> "AdminProcess":
        log = open(self.state_dir / "test-admin.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rock.cli.main", "admin", "start", "--foreground", "--log-level", "warning",
             "--port", str(self.port), "--backend", self.backend, "--state-dir", str(self.state_dir)],
            stdout=log, stderr=log, env=self.env, start_new_session=True)
        log.close()
        wait_healthy(self.url, self.proc, timeout, self.log_tail)
        return self

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.state_dir / "test-admin.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever it was doing."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def healthy(self) -> bool:
        return httpx.get(self.url + "/health", timeout=10).json()["result"]["status"] == "ok"

    # -- the ROCK protocol, as a client sends it ---------------------------------------------

    def post(self, route: str, body: dict, http_timeout: float = 60) -> httpx.Response:
        return self.http.post(route, json=body, timeout=http_timeout)

    def ok(self, route: str, http_timeout: float = 60, **body) -> dict:
        r = self.post(route, body, http_timeout)
        assert r.status_code == 200 and r.json()["status"] == "Success", (route, r.status_code, r.text[:2000])
        return r.json()["result"]

    def start_sandbox(self, **fields) -> str:
        body = {"memory": "512m", "cpus": 1, "auto_clear_seconds": 600, **fields}
        return self.ok("/start_async", http_timeout=120, wait=True, **body)["sandbox_id"]

    def status(self, sandbox_id: str) -> dict:
        r = self.http.get("/get_status", params={"sandbox_id": sandbox_id}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    def run(self, sandbox_id: str, command: str, timeout: float = 30, http_timeout: float = 60) -> httpx.Response:
        body = {"sandbox_id": sandbox_id, "command": command, "session": "default"}
        return self.post("/run_in_session", {**body, "timeout": timeout} if timeout else body, http_timeout)

    def delete_all(self) -> None:
        """Delete every sandbox this admin has a record of (the leak audit checks the rest)."""
        r = self.http.get("/sandboxes", timeout=30)
        for item in r.json()["result"]["items"] if r.status_code == 200 else []:
            self.post("/delete", {"sandbox_id": item["sandbox_id"]})


@pytest.fixture
def admin_process(request):
    """``admin_process(backend, **kw)``: an admin in its own process, stopped (its sandboxes
    deleted) at teardown even when the test failed midway."""
    made: list[AdminProcess] = []

    def make(backend: str, **kwargs) -> AdminProcess:
        made.append(AdminProcess(backend, **kwargs))
        return made[-1]

    yield make
    signal.alarm(0)
    for a in made:
        if a.proc is not None and a.proc.poll() is None:
            try:
                a.delete_all()
            except httpx.HTTPError:
                pass
            a.stop()
        a.http.close()


def backends():
    return [pytest.param("docker", marks=pytest.mark.docker, id="docker"),
            pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap")]


def agent_pid(admin: "AdminProcess", sandbox_id: str) -> int:
    """The host pid of a sandbox's agent: the parent of a shell it runs, mapped from the
    sandbox's pid namespace through NSpid in /proc."""
    inner = int(admin.ok("/execute", sandbox_id=sandbox_id, command="echo $PPID", shell=True)["stdout"])
    for pid in sandbox_pids(admin, sandbox_id):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspids = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        if int(nspids[-1]) == inner:
            return pid
    raise AssertionError(f"sandbox {sandbox_id}: no process with pid {inner} in its namespace")


def sandbox_pids(admin: AdminProcess, sandbox_id: str) -> list[int]:
    """Host pids of a sandbox's processes, from its cgroup (found through the worker's record)."""
    import json

    from rock.runtime import cgroups

    handle = json.loads((admin.state_dir / "records" / f"{sandbox_id}.json").read_text())["handle"]
    group = cgroups.sandbox_group(handle["backend"], handle["runtime_id"])
    assert group is not None, f"no cgroup for sandbox {sandbox_id}"
    return sorted(group.pids())


def sandbox_upper(admin: AdminProcess, sandbox_id: str) -> Path:
    """The host directory holding what the sandbox wrote (its overlay's upper layer)."""
    import json

    import docker

    handle = json.loads((admin.state_dir / "records" / f"{sandbox_id}.json").read_text())["handle"]
    if handle["backend"] == "docker":
        host = admin.env.get("DOCKER_HOST")
        engine = docker.DockerClient(base_url=host) if host else docker.from_env()
        try:
            return Path(engine.api.inspect_container(handle["runtime_id"])["GraphDriver"]["Data"]["UpperDir"])
        finally:
            engine.close()
    return Path(handle["run_dir"]).parent / "upper"


def memory_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class StalledClient:
    """A WebSocket client that sends and never reads: what the server has to say piles up on
    its side of the connection (the kernel buffers fill, then the server's own)."""

    def __init__(self, port: int, path: str):
        import base64
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # byte by byte: nothing past the handshake is consumed
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_json(self, message: dict) -> None:
        import json
        import struct

        data, mask = json.dumps(message).encode(), os.urandom(4)
        header = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0xFE]) + struct.pack("!H", len(data)))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def drop(self) -> None:
        """Vanish without a closing handshake, as a crashed client or a cut network does."""
        import socket

        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        self.sock.close()
