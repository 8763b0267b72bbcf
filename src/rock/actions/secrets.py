"""Secrets a tenant registers with the admin, each bound to the hosts it may be sent to.

A sandbox started with ``secrets`` (environment variable -> secret name) holds a placeholder in
that variable, never the value; the egress gate puts the value in place of the placeholder in
the requests that sandbox sends to the secret's hosts (``rock.runtime.egress.broker``). Values are
write-only: no reply, list or record carries them.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rock.actions.egress import HOST_PATTERN

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# What the relay may put in a request header: printable, no CR, LF or NUL (a value that could
# end a header line would let a secret's owner write headers of their own into the request).
VALUE_PATTERN = r"^[^\r\n\x00]+$"
_HOST = re.compile(rf"^{HOST_PATTERN}$")


def _host(value: str) -> str:
    text = value.strip()
    if not _HOST.match(text):
        raise ValueError(f"{value!r} is not a host name ('api.example.com') or a '*.' wildcard of the names below one")
    return text.rstrip(".").lower()


SecretName = Annotated[str, Field(pattern=NAME_PATTERN, description=(
    "lower-case letters, digits, '_', '.', '-'; at most 63 characters"))]
SecretHost = Annotated[str, Field(min_length=1, max_length=253, pattern=rf"^{HOST_PATTERN}$", description=(
    "a host name ('api.example.com') or a wildcard of the names below one ('*.example.com')")), AfterValidator(_host)]


class SecretCreate(BaseModel):
    """A new secret: its name, its value (write-only) and the hosts it may be sent to."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "openai", "value": "<the key>", "hosts": ["api.openai.com"]}]})

    name: SecretName
    value: str = Field(min_length=1, max_length=16384, pattern=VALUE_PATTERN, description=(
        "the secret itself (write-only: never returned); no CR, LF or NUL"))
    hosts: list[SecretHost] = Field(default_factory=list, max_length=64, description=(
        "the hosts the egress relay may send it to; at least one (none is a 400)"))


class SecretInfo(BaseModel):
    """A secret as every read shows it: never its value."""

    name: str
    hosts: list[str]
    placeholder: str = Field(description="what a sandbox started with this secret holds instead of its value")
    created_at: float
    updated_at: float


def placeholder(name: str) -> str:
    """What a sandbox holds instead of secret ``name``'s value (the same in every sandbox and fork)."""
    return f"rock-secret-placeholder-{name}"
