"""Sizes as people write them ('512m', '8g', '1.5GiB', '1048576'), for memory limits and volumes."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
SIZE_PATTERN = r"^(\s*[0-9]+(\.[0-9]+)?\s*[kmgtKMGT]?[iI]?[bB]?\s*)?$"  # _SIZE for clients ('' = unset)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str | None) -> int | None:
    """'8g' / '512m' / '1.5GiB' / '1048576' -> bytes."""
    if text is None or text == "":
        return None
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"invalid memory size {text!r}; use e.g. '512m' or '8g'")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
