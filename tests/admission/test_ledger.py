"""The admission ledger itself, on a real worker's view of this machine: what a node promises by
default, several claims admitted all or none, a release giving the share back, and a namespace's
quota beside another's."""

from __future__ import annotations

import os

import pytest

from rock.admin.sandboxes.admission import Admission
from rock.config import Settings
from rock.errors import CapacityExceeded, QuotaExceeded
from rock.worker.worker import Worker

GIB = 1 << 30


def ledger(tmp_path, **settings) -> Admission:
    s = Settings(state_dir=tmp_path, backend="local", **settings)
    return Admission(s, Worker(s, "local"))


def test_a_node_promises_its_cpus_and_memory_times_the_overcommits(tmp_path):
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    a = ledger(tmp_path)
    assert a.node_cpus == cores * 32 and a.node_memory == memory * 4
    b = ledger(tmp_path, overcommit=40)  # the operator's overcommit, where larger
    assert b.node_cpus == cores * 40 and b.node_memory == memory * 40
    c = ledger(tmp_path, node_cpus=3, node_memory="2g")
    assert (c.node_cpus, c.node_memory) == (3, 2 * GIB)


def test_claims_are_admitted_all_or_none_and_released(tmp_path):
    a = ledger(tmp_path, node_cpus=2, node_memory="64g")
    a.admit("t", [("a", 1.0, GIB)])
    with pytest.raises(CapacityExceeded) as refused:
        a.admit("t", [("b", 0.5, GIB), ("c", 0.75, GIB)])  # 2.25 cpus: neither is taken
    assert refused.value.limit == "node_cpus" and "2 cpus" in refused.value.message
    assert (a.cpus, a.memory) == (1.0, GIB)
    a.admit("t", [("b", 0.5, GIB), ("c", 0.5, GIB)])
    a.admit("t", [("a", 1.0, GIB)])  # held already: not counted twice
    assert a.cpus == 2.0
    for sid in "abc":
        a.release(sid)
    a.release("a")  # twice: nothing more
    assert (a.cpus, a.memory) == (0.0, 0)
    assert a.usage("t", 0, 0)["usage"]["sandboxes"] == 0


def test_a_namespaces_quota_leaves_the_others_alone(tmp_path):
    a = ledger(tmp_path, quotas={"small": {"sandboxes": 1, "memory": "1g"}, "*": {"sandboxes": 3}})
    cost = a.cost(0.5, 512 << 20)
    a.admit("small", [("s1", *cost)])
    with pytest.raises(QuotaExceeded) as refused:
        a.admit("small", [("s2", *cost)])
    assert refused.value.limit == "sandboxes" and refused.value.status_code == 429
    for i in range(3):  # another namespace, under "*"
        a.admit("other", [(f"o{i}", *cost)])
    with pytest.raises(QuotaExceeded):
        a.admit("other", [("o3", *cost)])
    assert a.usage("small", 0, 0)["limits"]["memory_bytes"] == GIB
    assert a.refused[("sandboxes", 429)] == 2
