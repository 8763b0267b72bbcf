"""Gymnasium values and spaces on the wire, the same code on both ends.

The env host (``gymhost.py``, inside the sandbox) and the SDK (``rock.numpy`` / ``rock.torch``)
both load this module; unlike the agent it needs numpy (the env's packages), imported when first
used, and gymnasium only to turn specs into space objects. Not imported by the agent itself.

A value is one body: ``MAGIC``, a little-endian u32 header length, a JSON header, then the raw
bytes of every array leaf, each starting at a multiple of 8. Array leaves keep dtype and shape
(``{"$a": [dtype, shape, offset]}``, dtype in numpy's little-endian string form), so a batch of
observations crosses as one block instead of a JSON list. Tuples, dicts with keys JSON cannot
keep, object arrays and other values have tagged forms; floats keep NaN and infinities.

A space is a ``SpaceSpec`` dict: ``{"kind", "shape", "dtype", "details"}``; see ``space_spec``.
"""

import json
import struct
from typing import Any

MAGIC = b"RKG1"
_HEAD = struct.Struct("<4sI")
_np = None


def np():
    """NumPy, imported on first use (an env host without arrays never loads it)."""
    global _np
    if _np is None:
        import numpy

        _np = numpy
    return _np


# -- values ----------------------------------------------------------------------------------


class _Writer:
    __slots__ = ("blocks", "size")

    def __init__(self):
        self.blocks, self.size = [], 0

    def add(self, arr):
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # not ascontiguousarray: it turns a 0-d array into a 1-d one
        offset = self.size
        self.blocks.append(arr)
        self.size += -(-arr.nbytes // 8) * 8
        return {"$a": [arr.dtype.str, list(arr.shape), offset]}

    def tree(self, value):
        if value is None or value is True or value is False or isinstance(value, (str, int, float)):
            return value
        n = np()
        if isinstance(value, n.ndarray):
            if value.dtype == object:
                return {"$o": [list(value.shape), [self.tree(v) for v in value.ravel().tolist()]]}
            if value.dtype.kind in "biufc" or value.dtype.kind == "?":
                return self.add(value)
            return {"$s": repr(value)}
        if isinstance(value, n.generic):
            return self.add(n.asarray(value)) if value.dtype.kind in "biuf?" else {"$s": str(value)}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.tree(v) for k, v in value.items()}
            return {"$m": [[self.tree(k), self.tree(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$t": [self.tree(v) for v in value]}
        if isinstance(value, (list, set, frozenset)):
            return [self.tree(v) for v in value]
        if isinstance(value, (bytes, bytearray)):
            return {"$y": [self.add(n.frombuffer(bytes(value), n.uint8))]}
        return {"$s": str(value)}


def encode(value: Any) -> bytes:
    """One body for ``value`` (nested dicts, tuples, lists, arrays, numbers, strings)."""
    w = _Writer()
    header = json.dumps({"v": w.tree(value)}, separators=(",", ":")).encode()
    start = -(-(_HEAD.size + len(header)) // 8) * 8
    out = bytearray(start + w.size)
    _HEAD.pack_into(out, 0, MAGIC, len(header))
    out[_HEAD.size:_HEAD.size + len(header)] = header
    pos = start
    for arr in w.blocks:
        out[pos:pos + arr.nbytes] = arr.tobytes()  # tobytes: any memory layout, one copy
        pos += -(-arr.nbytes // 8) * 8
    return bytes(out)


def decode(body: bytes) -> Any:
    """The value of a body; arrays are writable views of one private copy of its data."""
    if len(body) < _HEAD.size:
        raise ValueError("a gym value body is at least %d bytes, got %d" % (_HEAD.size, len(body)))
    magic, hlen = _HEAD.unpack_from(body, 0)
    if magic != MAGIC:
        raise ValueError("not a gym value body (bad magic %r)" % (magic,))
    header = json.loads(bytes(body[_HEAD.size:_HEAD.size + hlen]))
    if not isinstance(header, dict) or "v" not in header:
        raise ValueError("a gym value body's header must be an object with 'v'")
    start = -(-(_HEAD.size + hlen) // 8) * 8
    data = bytearray(body[start:]) if len(body) > start else bytearray()
    return _read(header["v"], data)


def _read(node, data):
    if isinstance(node, list):
        return [_read(v, data) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (tag, arg), = node.items()
        if tag == "$a":
            dtype, shape, offset = arg
            n = np()
            dt = n.dtype(dtype)
            count = 1
            for d in shape:
                count *= d
            if offset < 0 or offset + count * dt.itemsize > len(data):
                raise ValueError("array leaf points past the end of the body")
            arr = n.frombuffer(data, dt, count, offset).reshape(shape)
            return arr[()] if not shape else arr  # a 0-d leaf was a numpy scalar
        if tag == "$t":
            return tuple(_read(v, data) for v in arg)
        if tag == "$m":
            return {_freeze(_read(k, data)): _read(v, data) for k, v in arg}
        if tag == "$o":
            n = np()
            shape, items = arg
            out = n.empty(len(items), dtype=object)
            for i, v in enumerate(items):
                out[i] = _read(v, data)
            return out.reshape(shape)
        if tag == "$y":
            return bytes(_read(arg[0], data))
        if tag == "$s":
            return arg
    return {k: _read(v, data) for k, v in node.items()}


def _freeze(key):
    return tuple(key) if isinstance(key, list) else key


def item(body, index):
    """The ``index``-th item of a tuple body (a reset's or a step's observation is item 0) as
    canonical bytes: its header with each array's raw bytes in place of its offset. Two items
    hold equal values exactly when these bytes are equal (floats bit for bit). Standard library
    only: the admin compares a forked session's observation with its source's without numpy."""
    magic, hlen = _HEAD.unpack_from(body, 0)
    if magic != MAGIC:
        raise ValueError("not a gym value body (bad magic %r)" % (magic,))
    top = json.loads(bytes(body[_HEAD.size:_HEAD.size + hlen]))["v"]
    if not isinstance(top, dict) or not isinstance(top.get("$t"), list):
        raise ValueError("a gym value body that is not a tuple has no items")
    start = -(-(_HEAD.size + hlen) // 8) * 8
    blocks = []

    def inline(node):
        if isinstance(node, list):
            return [inline(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1 and "$a" in node:
            dtype, shape, offset = node["$a"]
            size = int(dtype.lstrip("<>|=")[1:] or 0)
            for d in shape:
                size *= d
            blocks.append(bytes(body[start + offset:start + offset + size]))
            return {"$a": [dtype, shape, len(blocks) - 1]}
        return {k: inline(v) for k, v in node.items()}

    tree = json.dumps(inline(top["$t"][index]), sort_keys=True, separators=(",", ":")).encode()
    return b"\0".join([tree, *blocks])


# -- spaces ----------------------------------------------------------------------------------

PRINTABLE = "".join(chr(c) for c in range(32, 127))


def _bound(values):
    """Bounds as strict JSON: infinities as strings, integer dtypes as ints."""
    flat = values.ravel()
    if flat.size and (flat == flat[0]).all():
        return _num(flat[0])
    return [_num(v) for v in flat.tolist()] if values.ndim <= 1 else [_bound(v) for v in values]


def _num(v):
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and v != v:
        return "nan"
    if v == float("inf"):
        return "inf"
    if v == float("-inf"):
        return "-inf"
    return v


def space_spec(space):
    """A gymnasium space as a wire-safe ``SpaceSpec`` dict."""
    from gymnasium import spaces as S

    n = np()
    if isinstance(space, S.Box):
        low, high = space.low, space.high
        if n.all(n.isneginf(low)) and n.all(n.isposinf(high)):
            details = {"bounds": "unbounded"}
        else:
            lo, hi = _bound(low), _bound(high)
            kind = "uniform" if not isinstance(lo, list) and not isinstance(hi, list) else "elementwise"
            if kind == "elementwise":
                lo = [_num(v) for v in low.ravel().tolist()]
                hi = [_num(v) for v in high.ravel().tolist()]
            details = {"bounds": kind, "low": lo, "high": hi}
        return _spec("box", space.shape, space.dtype, details)
    if isinstance(space, S.Discrete):
        return _spec("discrete", (), space.dtype, {"n": int(space.n), "start": int(space.start)})
    if isinstance(space, S.MultiDiscrete):
        return _spec("multi_discrete", space.shape, space.dtype,
                     {"nvec": space.nvec.tolist(), "start": space.start.tolist()})
    if isinstance(space, S.MultiBinary):
        size = space.n
        details = {"size": int(size)} if isinstance(size, (int, n.integer)) else {"dims": [int(d) for d in size]}
        return _spec("multi_binary", space.shape, space.dtype, details)
    if isinstance(space, S.Text):
        return _spec("text", (), None, {"min_length": space.min_length, "max_length": space.max_length,
                                        "charset": "".join(sorted(space.character_set))})
    if isinstance(space, S.Dict):
        return _spec("dict", None, None, {"spaces": {k: space_spec(v) for k, v in space.spaces.items()}})
    if isinstance(space, S.Tuple):
        return _spec("tuple", None, None, {"spaces": [space_spec(v) for v in space.spaces]})
    if type(space).__name__ == "MissionSpace":  # minigrid's free-text mission: a Text on the wire
        return _spec("text", (), None, {"min_length": 0, "max_length": 4096, "charset": PRINTABLE,
                                        "origin": "minigrid.MissionSpace"})
    raise TypeError("space %s cannot cross the wire (supported: Box, Discrete, MultiDiscrete, MultiBinary, Text, "
                    "Dict, Tuple)" % type(space).__name__)


def _spec(kind, shape, dtype, details):
    return {"kind": kind, "shape": None if shape is None else [int(d) for d in shape],
            "dtype": None if dtype is None else np().dtype(dtype).name, "details": details}


def _unbound(v, dtype):
    n = np()
    if isinstance(v, list):
        return n.array([_unbound(x, dtype) for x in v], dtype=dtype)
    return {"inf": n.inf, "-inf": -n.inf, "nan": n.nan}.get(v, v) if isinstance(v, str) else v


def spec_space(spec):
    """The gymnasium space of a ``SpaceSpec`` dict (the inverse of ``space_spec``)."""
    from gymnasium import spaces as S

    n = np()
    kind, d = spec["kind"], spec.get("details") or {}
    shape = tuple(spec["shape"]) if spec.get("shape") is not None else None
    dtype = n.dtype(spec["dtype"]) if spec.get("dtype") else None
    if kind == "box":
        wide = dtype if dtype.kind == "f" else n.float64  # bounds at the space's precision: no lossy cast
        if d.get("bounds") == "unbounded":
            low, high = -n.inf, n.inf
        elif d.get("bounds") == "elementwise":
            low = _unbound(d["low"], wide).reshape(shape)
            high = _unbound(d["high"], wide).reshape(shape)
        else:
            low, high = _unbound(d["low"], wide), _unbound(d["high"], wide)
        if dtype.kind in "iub":
            low, high = (n.asarray(b).astype(dtype)[()] if n.all(n.isfinite(b)) else b for b in (low, high))
        return S.Box(low=low, high=high, shape=shape, dtype=dtype)
    if kind == "discrete":
        return S.Discrete(d["n"], start=d.get("start", 0), dtype=dtype or n.int64)
    if kind == "multi_discrete":
        return S.MultiDiscrete(n.array(d["nvec"]), dtype=dtype or n.int64, start=n.array(d.get("start", 0)))
    if kind == "multi_binary":
        return S.MultiBinary(d["size"] if "size" in d else d["dims"])
    if kind == "text":
        return S.Text(d["max_length"], min_length=d.get("min_length", 1), charset=d.get("charset") or PRINTABLE)
    if kind == "dict":
        return S.Dict({k: spec_space(v) for k, v in d["spaces"].items()})
    if kind == "tuple":
        return S.Tuple([spec_space(v) for v in d["spaces"]])
    raise ValueError("unknown space kind %r" % kind)
