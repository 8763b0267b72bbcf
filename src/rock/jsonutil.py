"""JSON encoding for the hot path: orjson when present (several times faster), else the stdlib."""

from __future__ import annotations

import json


def _stdlib(obj) -> bytes:
    # ensure_ascii: a lone surrogate a client sent comes back escaped, not as an encoding error
    return json.dumps(obj, separators=(",", ":")).encode()


try:  # a declared dependency, but kept optional: an install without it still works, slower
    import orjson

    def dumps(obj) -> bytes:
        try:
            return orjson.dumps(obj)
        except TypeError:  # what orjson refuses and JSON allows: integers past 64 bits, lone surrogates
            return _stdlib(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    dumps = _stdlib
    loads = json.loads
