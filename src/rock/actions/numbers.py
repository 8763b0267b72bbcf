"""Numbers as the schema means them (JSON Schema's ``integer`` and ``number``).

An integer is a number without a fraction (``246.0`` is one, ``246.5`` is not); a boolean is
never a number, nor is a numeric string. Pydantic's lax mode took ``true`` as 1 and ``"5"`` as 5
(schema-violating requests accepted); its strict mode refused ``246.0`` (a schema-valid request
rejected). These take exactly what the schema allows.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator


def _a_number(value):
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
    return value


Int = Annotated[int, BeforeValidator(_a_number)]
Number = Annotated[float, BeforeValidator(_a_number)]
