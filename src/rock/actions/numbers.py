"""Numbers as the schema means them (JSON Schema's ``integer`` and ``number``).

An integer is a number without a fraction (``246.0`` is one, ``246.5`` is not); a boolean is
never a number, nor is a numeric string. Pydantic's lax mode took ``true`` as 1 and ``"5"`` as 5
(schema-violating requests accepted); its strict mode refused ``246.0`` (a schema-valid request
rejected). ``numbers_only`` takes exactly what the schema allows and leaves the fields' types and
bounds (and so their schema) as they are declared.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator


def _a_number(cls: type, value: Any) -> Any:
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
    return value


def numbers_only(*fields: str) -> Any:
    """A validator for a model's body: ``_numbers = numbers_only("wait", "index")``; each named
    field refuses a boolean or a string before pydantic's own parsing."""
    return field_validator(*fields, mode="before")(_a_number)
