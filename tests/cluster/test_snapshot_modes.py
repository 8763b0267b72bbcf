"""A cluster admin's snapshot modes: ``full`` is taken where the sandbox's node runs gVisor and
refused with a clear 400 where it does not (rock.admin.sandboxes.snapshots.SnapshotCatalog.check_mode).

The worker is the real ``ClusterWorker`` (its node table, placement, batching and heartbeats);
only where it finds its nodes is a stand-in, nodes in this process that declare the backend a
real node's worker reports (``NodeInfo.backend`` and ``capabilities``), so no Ray and no gVisor node is needed."""

from __future__ import annotations

import pytest

from rock.admin.sandboxes.snapshots import SnapshotCatalog
from rock.cluster.client import ClusterWorker
from rock.cluster.simulated import SimulatedNode, SimulatedNodes, SimulatedSpec
from rock.config import Settings
from rock.errors import BadRequest
from rock.runtime import get_runtime_class
from rock.runtime.base import SandboxSpec


class Node(SimulatedNode):
    """A stand-in node that runs ``backend``, as its worker would report it."""

    def __init__(self, name: str, backend: str):
        super().__init__(name, SimulatedSpec(nodes=1))
        self.backend = backend

    async def _info(self) -> dict:
        return {**await super()._info(), "backend": self.backend, "backends": [self.backend],
                "capabilities": sorted(get_runtime_class(self.backend).capabilities())}


def nodes(**backends: str) -> SimulatedNodes:
    """The stand-ins' ``NodeSource`` (``rock.cluster.tracking``) with these nodes."""
    source = SimulatedNodes(SimulatedSpec(nodes=1))
    source.nodes = {name: Node(name, backend) for name, backend in backends.items()}
    return source


@pytest.fixture
async def clusters(tmp_path):
    workers = []

    async def start(**backends: str) -> tuple[ClusterWorker, SnapshotCatalog]:
        worker = ClusterWorker(Settings(state_dir=tmp_path / f"c{len(workers)}", backend="bwrap"), nodes(**backends))
        workers.append(worker)
        await worker.start()
        return worker, SnapshotCatalog(worker, lambda future: None)

    yield start
    for worker in workers:
        await worker.close()


async def place(worker: ClusterWorker, sandbox_id: str, node: str) -> str:
    info = await worker.create(SandboxSpec(sandbox_id=sandbox_id, image="python:3.11", node_selector={"node": node}))
    assert info.node_id == node
    return sandbox_id


async def test_full_is_taken_on_a_gvisor_node_and_refused_on_a_bwrap_node(clusters):
    worker, catalog = await clusters(g1="gvisor", b1="bwrap")
    on_gvisor, on_bwrap = await place(worker, "sb-on-gvisor", "g1"), await place(worker, "sb-on-bwrap", "b1")
    catalog.check_mode("full", on_gvisor)
    assert catalog.takes_full(on_gvisor) and not catalog.takes_full(on_bwrap)
    with pytest.raises(BadRequest, match=r"the bwrap backend of node b1 \(which runs sandbox sb-on-bwrap\) cannot "
                                         r"take full .* only gvisor can .* node worker with --backend gvisor") as err:
        catalog.check_mode("full", on_bwrap)
    assert err.value.status_code == 400
    catalog.check_mode("filesystem", on_bwrap)  # files: every backend
    catalog.check_mode("full")  # asked of the cluster as a whole (an env's full fork): one node can
    with pytest.raises(BadRequest, match="snapshot mode 'memory'"):
        catalog.check_mode("memory", on_gvisor)


async def test_a_cluster_without_a_gvisor_node_refuses_full_as_a_whole(clusters):
    worker, catalog = await clusters(b1="bwrap", d1="docker")
    assert not catalog.takes_full()
    with pytest.raises(BadRequest, match="the bwrap/docker backend of this cluster's live nodes cannot take full"):
        catalog.check_mode("full")
    with pytest.raises(BadRequest, match="node d1"):
        catalog.check_mode("full", await place(worker, "sb-on-docker", "d1"))
