"""Human sizes such as ``8g``, ``512Mi`` or ``1GB`` as bytes, the way Docker reads them."""

import re

from rock.errors import BadRequest

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 4 << 20


def parse_memory(value: str | int | float | None) -> int | None:
    """A memory size in bytes from a number or text such as ``512m`` or ``8g`` (None when not given);
    ``BadRequest`` for what cannot be read or is too small for a sandbox."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise BadRequest(f"cannot read memory size {value!r}; use a number of bytes or e.g. '512m', '8g'")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < MIN_MEMORY:
        raise BadRequest(f"memory {value!r} is below the 4 MiB a sandbox needs")
    return size
