"""The cluster on local Ray nodes: two Ray nodes on this machine, a rock worker on each, and an
admin that places sandboxes on them (`rock admin start --cluster ADDRESS`) and reaches every
sandbox through its node's worker. Needs the cluster extra (ray). On several machines the same
pieces are `ray start`, `rock worker start` and `rock admin start --cluster`: docs/deploy.md.

This example starts and stops its own Ray nodes and admin (ports from ROCK_EXAMPLE_RAY_PORT and
ROCK_EXAMPLE_ADMIN_PORT, default 6390 and 8090): `python examples/cluster_local_ray.py`.
"""

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from rock.cluster.localray import LocalRay
from rock.sdk.sandbox.config import SandboxConfig
from rock.sdk.sandbox.sync import SyncSandbox

NODES = {"n1": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "a"}},
         "n2": {"num_cpus": 2, "memory": 2 << 30, "labels": {"zone": "b"}}}


def rock(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "rock.cli.main", *args], check=True, capture_output=True,
                          text=True, timeout=300).stdout


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="rkc-", dir="/tmp"))  # short: Ray's socket paths live below it
    ray_port = int(os.environ.get("ROCK_EXAMPLE_RAY_PORT", 6390))
    admin = ["--state-dir", str(root / "admin")]
    ray = LocalRay(root, ray_port, NODES, backend="bwrap")
    try:
        ray.start()
        print(f"Ray nodes {', '.join(NODES)} at {ray.address}, a worker on each")
        started = json.loads(rock("--json", "admin", "start", "--cluster", ray.address, *admin,
                                  "--port", os.environ.get("ROCK_EXAMPLE_ADMIN_PORT", "8090")))
        url = started["url"]
        # disk: what placement reserves on a node (rl-rock asks 50G by default; these nodes share one disk)
        boxes = [SyncSandbox(SandboxConfig(base_url=url, memory="256m", cpus=0.5, disk="1G", startup_timeout=60))
                 for _ in range(4)]
        for box in boxes:
            box.start()
        for box in boxes:
            print(f"sandbox {box.sandbox_id[:8]}: {box.arun('echo hello from $(hostname)').output.strip()}")
        nodes = httpx.get(f"{url}/apis/envs/sandbox/v1/cluster/status", timeout=30).json()["result"]["nodes"]
        # The admin's records say where each sandbox runs (a node's own count is a heartbeat old).
        placed = collections.Counter({n["name"]: n["sandbox_states"].get("running", 0) for n in nodes})
        print(f"placement (spread): {dict(placed)}")
        assert sum(placed.values()) == 4 and all(placed.values())  # both nodes used
        for box in boxes:
            box.delete()
    finally:
        subprocess.run([sys.executable, "-m", "rock.cli.main", "admin", "stop", *admin], capture_output=True)
        ray.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
