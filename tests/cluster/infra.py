"""Real parts for the cluster tests: a PostgreSQL server, a local multi-node Ray cluster with a
rock worker on each node, and admin/proxy processes. Each is started on this session's own
ports and directories and stopped by exactly what started it (never ``ray stop``, which would
take other people's Ray down too)."""

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
            self.proc.send_signal(signal.SIGINT)  # postgres' "fast" shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


NODES = {  # name -> what its Ray node declares and the labels its worker reports
    "n1": {"num_cpus": 4, "memory": 4 << 30, "labels": {"zone": "a", "size": "large"}},
    "n2": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}},
    "n3": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}},
}


class RayCluster:
    """Several Ray nodes on this machine (``ray.cluster_utils``), each with its own rock worker."""

    def __init__(self, root: Path, port: int = RAY_PORT):
        self.root, self.port = root, port
        self.cluster = None
        self.ray_nodes: dict[str, object] = {}
        self.address = ""

    def _node_args(self, name: str) -> dict:
        spec = NODES[name]
        return {"num_cpus": spec["num_cpus"], "memory": spec["memory"], "object_store_memory": 80 << 20,
                "temp_dir": str(self.root / "r" / "ray")}

    def start(self) -> "RayCluster":
        import ray
        from ray.cluster_utils import Cluster

        (self.root / "r").mkdir(parents=True, exist_ok=True)
        # Ray writes its "current cluster" file under RAY_TMPDIR: keep it in our directory.
        os.environ["RAY_TMPDIR"] = str(self.root / "r")
        head = {**self._node_args("n1"), "gcs_server_port": self.port, "include_dashboard": False,
                # a dead node is declared dead (and its actor's name freed) within ~2 s
                "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                                   "health_check_timeout_ms": 500}}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.ray_nodes["n1"] = self.cluster.head_node
        for name in ("n2", "n3"):
            self.ray_nodes[name] = self.cluster.add_node(**self._node_args(name))
        self.address = self.cluster.address
        ray.init(address=self.address, namespace="rock", log_to_driver=False, logging_level="WARNING")
        for name in NODES:
            self.start_worker(name)
        return self

    def settings(self, name: str):
        from rock.config import Settings
        from tests.admin.harness import share_images

        state = self.root / name
        state.mkdir(exist_ok=True)
        share_images(state)
        return Settings(state_dir=state, backend="bwrap", node_labels={**NODES[name]["labels"], "node": name},
                        relay_host="127.0.0.1")

    def start_worker(self, name: str) -> dict:
        from rock.cluster.node import start_node

        return start_node(self.settings(name), name=name, node_id=self.ray_nodes[name].node_id)

    def kill(self, name: str) -> None:
        """The node dies at once: its raylet and every process of it, our worker included."""
        self.cluster.remove_node(self.ray_nodes.pop(name), allow_graceful=False)

    def revive(self, name: str) -> dict:
        """A new Ray node under the old name and state dir: its worker re-attaches what still runs."""
        self.ray_nodes[name] = self.cluster.add_node(**self._node_args(name))
        return self.start_worker(name)

    def stop(self) -> None:
        import ray

        from rock.cluster.node import ACTOR_PREFIX, NAMESPACE

        for name in list(self.ray_nodes):
            try:
                actor = ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE)
                ray.get(actor.shutdown.remote(True), timeout=120)
                ray.kill(actor)
            except Exception as exc:  # noqa: BLE001 - report and go on stopping the rest
                print(f"stopping the worker of {name} failed: {exc}", file=sys.stderr)
        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
        os.environ.pop("RAY_TMPDIR", None)


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} on {self.port} exited: {self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.role} on {self.port} not ready in {timeout}s: {self.log()[-3000:]}")

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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
