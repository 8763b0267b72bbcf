"""Placement decisions over node views (no Ray needed: the decisions are pure)."""

from __future__ import annotations

import pytest

from rock.worker.resources import GIB, Need, NodeInfo, NodeLoad, Resources
from rock.cluster.placement import NodeView, Placement
from rock.errors import BadRequest


def node(name: str, cpus: float, mem_gib: int, gpus: int = 0, labels=None, images=(), pools=(), used=0.0) -> NodeView:
    return NodeView(NodeInfo(
        name=name, ray_node_id=name, host_name=name, ip="127.0.0.1", relay="127.0.0.1:1", token="t",
        capacity=Resources(cpus=cpus, memory_bytes=mem_gib * GIB, gpus=gpus, disk_bytes=100 * GIB),
        labels=labels or {}, backend="bwrap", images=list(images), pools=list(pools),
        load=NodeLoad(reserved=Resources(cpus=used), sandboxes=0, version=0, loadavg=0.0)))


def need(cpus=1.0, mem_gib=1, gpus=0, selector=None, image="python:3.11") -> Need:
    return Need(resources=Resources(cpus=cpus, memory_bytes=mem_gib * GIB, gpus=gpus), selector=selector or {}, image=image)


def test_spread_and_pack():
    nodes = [node("a", 8, 16), node("b", 8, 16, used=4)]
    assert Placement("spread").choose(need(), nodes).name == "a"
    assert Placement("pack").choose(need(), nodes).name == "b"


def test_prefers_warm_pool_then_image():
    nodes = [node("a", 8, 16), node("b", 8, 16, images=["python:3.11"], used=2), node("c", 8, 16, pools=["python:3.11"], used=4)]
    assert Placement().choose(need(), nodes).name == "c"
    assert Placement().choose(need(), nodes[:2]).name == "b"
    # packing too: the pool (or the image) first, however much room it has left; then the fullest
    packed = [node("a", 8, 16, used=6), node("b", 8, 16, images=["python:3.11"]), node("c", 8, 16, pools=["python:3.11"])]
    assert Placement("pack").choose(need(), packed).name == "c"
    assert Placement("pack").choose(need(), packed[:2]).name == "b"
    assert Placement("pack").choose(need(image="other"), packed).name == "a"


def test_labels_gpus_overcommit_and_full():
    nodes = [node("a", 2, 4, labels={"zone": "a"}), node("g", 2, 4, gpus=1, labels={"accelerator_type": "T4"})]
    assert Placement().choose(need(selector={"zone": "a"}), nodes).name == "a"
    assert Placement().choose(need(gpus=1), nodes).name == "g"
    full = [node("a", 2, 4, used=2)]
    assert Placement().choose(need(), full) is None
    assert Placement(overcommit=2.0).choose(need(), full).name == "a"
    grown = node("a", 2, 4, used=2)
    assert Placement().choose(need(), [grown]) is None
    grown.update(node("a", 4, 4, used=2).info)  # its next report says it has more cpus
    assert Placement().choose(need(), [grown]).name == "a"
    full[0].lost_at = 1.0
    assert Placement(overcommit=2.0).choose(need(), full) is None  # lost nodes get nothing


def test_refusals_say_what_the_largest_node_has():
    nodes = [node("small", 2, 4), node("big", 16, 64)]
    with pytest.raises(BadRequest, match=r"asks for 32 cpus; the largest node \(big\) has 16 cpus"):
        Placement().refuse(need(cpus=32), nodes)
    with pytest.raises(BadRequest, match="no node has a GPU"):
        Placement().refuse(need(gpus=1), nodes)
    with pytest.raises(BadRequest, match=r"no node has the labels accelerator_type=A100 \(nodes' labels: small: \(none\)"):
        Placement().refuse(need(gpus=1, selector={"accelerator_type": "A100"}), nodes)
    with pytest.raises(BadRequest, match="no node with a rock worker"):
        Placement().refuse(need(), [])
    Placement().refuse(need(cpus=16, mem_gib=64), nodes)  # exactly the largest: accepted


def test_a_report_drops_exactly_the_placements_it_holds_and_an_older_one_changes_nothing():
    view = node("a", 4, 8)
    one = Resources(cpus=1.0, memory_bytes=GIB)
    view.claim("s1", one)
    view.claim("s2", one)
    assert view.free(1.0).cpus == 2.0  # both placements of this admin's counted, no report holds them yet
    # the node's report holds s1 (its claim) but not s2: s1 is counted once, by the report
    view.apply(NodeLoad(reserved=one, sandboxes=0, version=3, loadavg=0.0, ids=["s1"]))
    assert sorted(view.mine) == ["s2"] and view.free(1.0).cpus == 2.0
    # an older report (read over another path, late) changes nothing: s1 is not forgotten
    view.apply(NodeLoad(reserved=Resources(), sandboxes=0, version=2, loadavg=0.0, ids=[]))
    assert view.free(1.0).cpus == 2.0
    # a stop's report without s1, then s2's failure: nothing of either is counted
    view.apply(NodeLoad(reserved=Resources(), sandboxes=0, version=5, loadavg=0.0, ids=[]))
    view.unclaim("s2")
    assert view.free(1.0).cpus == 4.0 and view.pending == Resources()
