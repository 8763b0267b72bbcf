"""Real parts for the cluster tests: a PostgreSQL server, a local multi-node Ray cluster with a
rock worker on each node (``rock.cluster.localray``), and admin/proxy processes. Each is started
on this session's own ports and directories and stopped by exactly what started it."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rock.cluster.localray import LocalRay
from tests.admin.harness import terminate, wait_healthy
from tests.conftest import SESSION_ROOT

PG_PORT = 18201
RAY_PORT = 18200


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (scripts/setup-host.sh installs the postgresql package)")
    return found


class Postgres:
    """A throwaway server in its own directory (as the ``postgres`` user when we are root: it refuses root)."""

    def __init__(self, root: Path, port: int = PG_PORT):
        self.root, self.port = root, port
        self.data, self.sock = root / "data", root / "sock"
        self.proc: subprocess.Popen | None = None
        self.url = f"postgresql://rock@127.0.0.1:{port}/rock"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        subprocess.run(self._as_owner([_pg_bin("initdb"), "-D", str(self.data), "-U", "rock", "-A", "trust", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        self.proc = subprocess.Popen(
            self._as_owner([_pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
                            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"]),
            stdout=subprocess.DEVNULL, stderr=open(self.root / "log", "wb"), start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True)
            if ready.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "rock", "rock"],
                       check=True, capture_output=True, timeout=60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # Told by pg_ctl, not by a signal to our child: that is runuser, which does not pass it on.
            subprocess.run(self._as_owner([_pg_bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"]),
                           capture_output=True, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


NODES = {  # name -> what its Ray node declares and the labels its worker reports (plus node=<name>)
    "n1": {"num_cpus": 4, "memory": 4 << 30, "labels": {"zone": "a", "size": "large"}},
    "n2": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}},
    "n3": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}},
}


def ray_cluster(root: Path) -> LocalRay:
    images = SESSION_ROOT / "images"  # one unpacked python:3.11 for every node and test admin
    images.mkdir(exist_ok=True)
    return LocalRay(root, RAY_PORT, NODES, backend="bwrap", images_dir=images)


class AdminProc:
    """``rock admin start --foreground`` as its own process (an admin or a proxy)."""

    def __init__(self, root: Path, port: int, role: str, cluster: str, store_url: str, **settings):
        self.root, self.port, self.role = root, port, role
        self.url = f"http://127.0.0.1:{port}"
        self.state = root / f"{role}-{port}"
        self.state.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **{f"ROCK_{k.upper()}": str(v) for k, v in settings.items()}}
        self.argv = [sys.executable, "-m", "rock.cli.main", "admin", "start", "--foreground", "--port", str(port),
                     "--state-dir", str(self.state), "--role", role, "--cluster", cluster, "--store-url", store_url,
                     "--log-level", "warning"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "AdminProc":
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=open(self.state / "out.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 90) -> "AdminProc":
        wait_healthy(self.url, self.proc, timeout, self.log)
        return self

    def log(self) -> str:
        return (self.state / "out.log").read_text(errors="replace")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()["result"]

    def kill(self) -> None:
        """As a crash: no shutdown, no lease released."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, self.kill)
