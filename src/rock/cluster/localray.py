"""Several Ray nodes on one machine, each with its own resources, labels and rock worker: what the
cluster tests and the cluster benchmark run on. Started on given ports and directories and stopped
by exactly what started it (never ``ray stop``, which would stop every Ray on the machine)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rock.config import Settings

# A dead node is declared dead (and its worker's name freed) within ~2 s instead of Ray's ~30 s.
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}


class LocalRay:
    def __init__(self, root: Path, port: int, nodes: dict[str, dict], backend: str = "bwrap", **settings):
        """``nodes``: name -> {"num_cpus", "memory" (bytes), "labels", and "backend" where it is not
        ``backend``}; the first is Ray's head; ``settings``: every node worker's other settings
        (e.g. one ``images_dir`` for them all)."""
        self.root, self.port, self.nodes = Path(root), port, nodes
        self.backend, self.extra = backend, settings
        self.cluster = None
        self.ray_nodes: dict[str, object] = {}
        self.address = ""

    def _node_args(self, name: str) -> dict:
        spec = self.nodes[name]
        return {"num_cpus": spec["num_cpus"], "memory": spec["memory"], "object_store_memory": 80 << 20,
                "temp_dir": str(self.root / "r" / "ray")}

    def start(self) -> "LocalRay":
        import ray
        from ray.cluster_utils import Cluster

        (self.root / "r").mkdir(parents=True, exist_ok=True)
        # Ray writes its "current cluster" file under RAY_TMPDIR: keep it in our directory.
        os.environ["RAY_TMPDIR"] = str(self.root / "r")
        names = list(self.nodes)
        head = {**self._node_args(names[0]), "gcs_server_port": self.port, "include_dashboard": False,
                "_system_config": FAST_HEALTH_CHECKS}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.ray_nodes[names[0]] = self.cluster.head_node
        for name in names[1:]:
            self.ray_nodes[name] = self.cluster.add_node(**self._node_args(name))
        self.address = self.cluster.address
        ray.init(address=self.address, namespace="rock", log_to_driver=False, logging_level="WARNING")
        for name in names:
            self.start_worker(name)
        return self

    def settings(self, name: str) -> Settings:
        state = self.root / name
        state.mkdir(exist_ok=True)
        return Settings(state_dir=state, backend=self.nodes[name].get("backend", self.backend), relay_host="127.0.0.1",
                        node_labels={**self.nodes[name].get("labels", {}), "node": name}, **self.extra)

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

    def stop(self, stop_sandboxes: bool = True) -> None:
        import ray

        from rock.cluster.node import ACTOR_PREFIX, NAMESPACE

        for name in list(self.ray_nodes):
            try:
                actor = ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE)
                ray.get(actor.shutdown.remote(stop_sandboxes), timeout=300)
                ray.kill(actor)
            except Exception as exc:  # noqa: BLE001 - report and go on stopping the rest
                print(f"stopping the worker of {name} failed: {exc}", file=sys.stderr)
        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
        os.environ.pop("RAY_TMPDIR", None)
