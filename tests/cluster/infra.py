"""Real parts for the cluster tests: a PostgreSQL server, a local multi-node Ray cluster with a
rock worker on each node (``rock.cluster.localray``), and admin/proxy processes. Each is started
on this session's own ports and directories and stopped by exactly what started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from rock.admin.store.localpg import Postgres  # noqa: F401 - the cluster tests' server
from rock.cluster.localray import LocalRay
from tests.admin.harness import free_port, terminate, wait_healthy


NODES = {  # name -> what its Ray node declares and the labels its worker reports (plus node=<name>)
    "n1": {"num_cpus": 4, "memory": 4 << 30, "labels": {"zone": "a", "size": "large"}},
    "n2": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}},
    "n3": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}},
}


def ray_cluster(root: Path) -> LocalRay:
    return LocalRay(root, free_port(), NODES, backend="bwrap")  # images: the session's (ROCK_IMAGES_DIR)


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
