"""Every worker the admin can hold satisfies ``WorkerOps`` signature for signature, and every
listener a worker tells satisfies ``WorkerListener``: the seam is checked, not agreed by habit."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import pytest

from rock.chat.hub import ChatHub
from rock.admin.sandboxes.service import Sandboxes
from rock.cluster.client import ClusterWorker
from rock.cluster.simulated import SimulatedCluster
from rock.config import Settings
from rock.worker.attached import AttachedWorker
from rock.worker.protocol import WorkerListener, WorkerOps
from rock.worker.worker import Worker
from tests.conftest import SESSION_ROOT

IMPLEMENTATIONS = [Worker, AttachedWorker, ClusterWorker, SimulatedCluster]


def _members(proto: type) -> tuple[list[str], list[str]]:
    """The Protocol's methods and its declared attributes."""
    methods = [n for n, v in vars(proto).items() if inspect.isfunction(v) and not n.startswith("_")]
    attributes = [n for n in getattr(proto, "__annotations__", {}) if not n.startswith("_")]
    return methods, attributes


def _shape(fn) -> tuple[bool, list[tuple[str, object, object]]]:
    """What a caller relies on: async or not, and each parameter's name, kind and default."""
    sig = inspect.signature(fn)
    return (inspect.iscoroutinefunction(fn),
            [(p.name, p.kind, p.default) for p in sig.parameters.values()])


def mismatches(impl: type, proto: type) -> list[str]:
    methods, _ = _members(proto)
    out = []
    for name in methods:
        mine = getattr(impl, name, None)
        if mine is None or not callable(mine):
            out.append(f"{impl.__name__}.{name} is missing")
            continue
        if isinstance(inspect.getattr_static(impl, name), staticmethod):
            mine = getattr(impl, name).__get__(None, impl)
        want, got = _shape(getattr(proto, name)), _shape(mine)
        if want != got:
            out.append(f"{impl.__name__}.{name}{inspect.signature(mine)} differs from "
                       f"{proto.__name__}.{name}{inspect.signature(getattr(proto, name))}")
    return out


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_each_worker_has_every_operation_with_the_protocols_signature(impl):
    assert mismatches(impl, WorkerOps) == []


def test_the_comparison_sees_a_missing_operation_and_a_changed_signature():
    class Drifted(Worker):
        async def stats(self, sandbox_id: str) -> None:  # node_id dropped
            return None

        start = None  # gone

    found = mismatches(Drifted, WorkerOps)
    assert any("Drifted.stats" in m for m in found) and any("Drifted.start is missing" in m for m in found), found


def _instances():
    state = Path(tempfile.mkdtemp(prefix="wops", dir=SESSION_ROOT))
    yield Worker(Settings(state_dir=state / "w", backend="local"), "local")
    yield AttachedWorker(Settings(state_dir=state / "a", backend="local"), "local")
    yield SimulatedCluster(Settings(state_dir=state / "c", simulated_cluster={"nodes": 2}))


def test_each_worker_declares_the_protocols_attributes():
    _, attributes = _members(WorkerOps)
    assert {"backend_name", "clustered", "listeners", "pool"} <= set(attributes)
    seen = {}
    for worker in _instances():
        missing = [a for a in attributes if not hasattr(worker, a)]
        assert missing == [], (type(worker).__name__, missing)
        assert isinstance(worker.clustered, bool) and isinstance(worker.listeners, list)
        assert isinstance(worker.pool.size(), int) and isinstance(worker.pool.summary(), list)
        seen[type(worker).__name__] = worker.clustered
    assert seen == {"Worker": False, "AttachedWorker": False, "SimulatedCluster": True}


@pytest.mark.parametrize("listener", [Sandboxes, ChatHub], ids=lambda c: c.__name__)
def test_each_listener_is_a_worker_listener_with_its_signatures(listener):
    assert issubclass(listener, WorkerListener)
    assert mismatches(listener, WorkerListener) == []
