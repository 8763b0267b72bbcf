"""gymwire: every space kind, nested ones too, crosses as a SpaceSpec and comes back equal; values
keep dtype, shape and container types. No sandbox needed: this is the codec both ends share."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from gymnasium import spaces as S

from rock.agent.envhost import gymwire
from rock.envs.contract import SpaceSpec

SPACES = {
    "box-uniform": S.Box(-1.0, 1.0, (3, 2), np.float32),
    "box-elementwise-inf": S.Box(np.array([-np.inf, 0.0, -2.5]), np.array([np.inf, 1.0, 2.5]), dtype=np.float64),
    "box-unbounded": S.Box(-np.inf, np.inf, (4,), np.float64),
    "box-uint8-image": S.Box(0, 255, (7, 7, 3), np.uint8),
    "box-int-elementwise": S.Box(np.array([0, -3]), np.array([5, 3]), dtype=np.int32),
    "discrete": S.Discrete(5),
    "discrete-start": S.Discrete(3, start=-1),
    "multi-discrete": S.MultiDiscrete([3, 4, 5]),
    "multi-discrete-2d": S.MultiDiscrete(np.array([[2, 3], [4, 5]])),
    "multi-binary": S.MultiBinary(6),
    "multi-binary-dims": S.MultiBinary([2, 3]),
    "text": S.Text(12, min_length=2, charset="abc xyz"),
    "dict": S.Dict({"pos": S.Box(-1, 1, (2,)), "id": S.Discrete(4), "name": S.Text(5)}),
    "tuple": S.Tuple((S.Discrete(2), S.Box(0, 1, (1,)), S.MultiBinary(3))),
    "nested": S.Dict({"a": S.Tuple((S.Dict({"b": S.MultiDiscrete([2, 2])}), S.Text(4))),
                      "c": S.Box(0, 9, (2, 2), np.int64)}),
}


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return a == b and type(a) is type(b) or (isinstance(a, np.generic) and a == b and a.dtype == b.dtype)


@pytest.mark.parametrize("name", SPACES)
def test_space_round_trips_exactly(name):
    space = SPACES[name]
    spec = gymwire.space_spec(space)
    wire = json.loads(json.dumps(spec, allow_nan=False))  # strict JSON: no NaN, no Infinity
    assert SpaceSpec(**wire).to_space() == space
    space.seed(7)
    sample = space.sample()
    back = gymwire.decode(gymwire.encode(sample))
    assert _equal(sample, back), (sample, back)
    assert space.contains(back)


@pytest.mark.parametrize("name", ["box-uniform", "dict", "tuple", "nested", "text"])
def test_batched_values_round_trip(name):
    from gymnasium.vector.utils import batch_space

    batched = batch_space(SPACES[name], 5)
    batched.seed(3)
    sample = batched.sample()
    assert _equal(sample, gymwire.decode(gymwire.encode(sample)))


def test_values_keep_types_and_arrays_are_writable_bytes_not_lists():
    obs = np.arange(64 * 4, dtype=np.float32).reshape(64, 4)
    value = (obs, np.ones(64), np.zeros(64, bool), {"x": [1, 2.5, None, "s"], 3: "int key", "$odd": (1,)},
             float("nan"), math.inf, np.int64(7), b"raw")
    body = gymwire.encode(value)
    assert len(body) < obs.nbytes + 64 * 8 + 64 + 400  # raw bytes, not a JSON list of numbers
    back = gymwire.decode(body)
    assert isinstance(back, tuple) and _equal(back[0], obs) and back[0].flags.writeable
    back[0][0, 0] = -1  # writable, and private to this value
    assert back[1].dtype == np.float64 and back[2].dtype == bool
    assert back[3] == {"x": [1, 2.5, None, "s"], 3: "int key", "$odd": (1,)}
    assert math.isnan(back[4]) and back[5] == math.inf
    assert back[6] == 7 and back[6].dtype == np.int64 and back[7] == b"raw"


def test_big_endian_arrays_arrive_little_endian_with_the_same_values():
    arr = np.arange(5, dtype=">i4")
    back = gymwire.decode(gymwire.encode(arr))
    assert back.dtype == np.dtype("<i4") and back.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("body", [b"", b"XXXX\x00\x00\x00\x00", gymwire.MAGIC + b"\xff\xff\xff\x00{}"])
def test_bad_bodies_are_refused_with_a_value_error(body):
    with pytest.raises(ValueError):
        gymwire.decode(body)


def test_an_array_leaf_pointing_past_the_body_is_refused():
    body = bytearray(gymwire.encode(np.zeros(4)))
    forged = bytes(body).replace(b"[4]", b"[9]")
    with pytest.raises(ValueError, match="past the end"):
        gymwire.decode(forged)


def test_unsupported_spaces_are_named():
    with pytest.raises(TypeError, match="Graph"):
        gymwire.space_spec(S.Graph(S.Box(0, 1, (2,)), S.Discrete(2)))


def test_an_items_bytes_are_equal_exactly_when_its_values_are():
    """``item``: how the admin compares a forked gym session's observation with its source's."""
    obs = {"img": np.arange(12, dtype=np.uint8).reshape(3, 4), "pos": np.float32(0.5), "name": "a", "raw": b"xy"}
    step = gymwire.encode((obs, 1.0, False, False, {"t": np.zeros(3)}))
    # Another reward and info, longer arrays before nothing: the observation is the same.
    other = gymwire.encode((dict(obs), 2.5, True, False, {"t": np.ones(40), "more": 1}))
    assert gymwire.item(step, 0) == gymwire.item(other, 0)
    assert gymwire.item(step, 1) != gymwire.item(other, 1)
    for changed in ({**obs, "img": obs["img"] + 1}, {**obs, "pos": np.float64(0.5)}, {**obs, "raw": b"xz"},
                    {**obs, "img": obs["img"].reshape(4, 3)}):
        assert gymwire.item(gymwire.encode((changed, 1.0)), 0) != gymwire.item(step, 0), changed
    assert gymwire.item(gymwire.encode((np.float32(np.nan), {})), 0) == gymwire.item(gymwire.encode((np.float32(np.nan), {})), 0)
    with pytest.raises(ValueError, match="not a tuple"):
        gymwire.item(gymwire.encode([1, 2]), 0)
    with pytest.raises(ValueError, match="bad magic"):
        gymwire.item(b"NOPE" + bytes(8), 0)
