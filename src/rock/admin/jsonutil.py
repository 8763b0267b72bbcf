"""JSON encoding for the hot path: orjson when present (several times faster), else the stdlib."""

from __future__ import annotations

import json

try:  # a declared dependency, but kept optional: an install without it still works, slower
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment

    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    loads = json.loads
