"""A sandbox's egress policy: what it may reach over the network, as callers write it.

``"none"`` (nothing, the default), ``"all"`` (everything but the host, the admin and other
sandboxes) or rules: ``allow`` and ``deny`` lists of host names (``example.com`` exactly,
``*.example.com`` any name below it) and addresses or CIDRs, and ``ports`` (destination ports or
ranges ``"8000-8100"``; empty: any). A connection passes when it matches ``allow`` (or ``default``
is ``allow``) and no ``deny`` entry; a deny always wins. Host names are matched where the traffic
says them (the HTTP ``Host``, the TLS SNI) and in the DNS questions the sandbox asks.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

# One DNS label (RFC 1123; underscores as some services use them); the last starts with a letter,
# so a name is never read as an address (inet_aton takes "10.1" as 10.0.0.1).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_TLD = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = rf"(?:\*\.)?(?:{_LABEL}\.)*{_TLD}\.?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CIDR_PATTERN = rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?"
TARGET_PATTERN = rf"^(?:{HOST_PATTERN}|{CIDR_PATTERN})$"
_TARGET = re.compile(TARGET_PATTERN)
# A port is 1-65535 in the schema too ("0" or "70000" is refused by the grammar, not later); that a
# range's low end is not above its high end is the one rule the pattern cannot say.
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
PORT_PATTERN = rf"^{_PORT}(-{_PORT})?$"
_TARGET_DOC = ("a host name ('example.com'), a wildcard of the names below one ('*.example.com'), "
               "an IPv4 address or CIDR ('10.0.0.0/8')")

Target = Annotated[str, Field(min_length=1, max_length=253, pattern=TARGET_PATTERN, description=_TARGET_DOC)]

def _a_port_number(value: Any) -> Any:
    # A string is the string branch's to judge ("00080" would otherwise be read as 80 here and pass
    # where the schema's pattern refuses it); a boolean is no port. 80.0 is JSON Schema's integer.
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{value!r} is not a port number")
    return value


# The bounds before the validator: after it, pydantic cannot put them on the integer and writes its
# own 'ge'/'le' into the JSON schema, which JSON Schema tools ignore (a client would send -5).
Port = Union[Annotated[int, Field(ge=1, le=65535), BeforeValidator(_a_port_number)],
             Annotated[str, Field(pattern=PORT_PATTERN)]]


def parse_target(value: str) -> ipaddress.IPv4Network | str:
    """A network for an address or CIDR, else the host pattern in lower case; ValueError naming
    the entry for anything else (IPv6 too: gated sandboxes have IPv4 only)."""
    text = value.strip()
    if not _TARGET.match(text):
        raise ValueError(f"{value!r} is not {_TARGET_DOC}")
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return text.rstrip(".").lower()


def parse_port(value: int | str) -> tuple[int, int]:
    """(first, last) of a port or a range; ValueError naming the entry."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port")
    first, _, last = str(value).partition("-")
    low, high = int(first), int(last or first)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{value!r} is not a port (1-65535) or a range 'low-high'")
    return low, high


PROXY_PATTERN = rf"^(?:{HOST_PATTERN}|{_OCTET}(?:\.{_OCTET}){{3}}):{_PORT}$"


class EgressProxy(BaseModel):
    """An operator's SOCKS5 proxy that allowed connections go out through (after the policy
    decided them; if it cannot be used the connection fails, never going out directly)."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(max_length=260, pattern=PROXY_PATTERN, description=(
        "host:port of the SOCKS5 proxy (a host name or IPv4 address; never the host's, the admin's "
        "or a sandbox's)"))
    username: str | None = Field(default=None, min_length=1, max_length=255, description="RFC 1929 user name")
    password: str | None = Field(default=None, max_length=255, description=(
        "RFC 1929 password (kept with the sandbox's record at the admin, never shown in the sandbox)"))


class EgressRules(BaseModel):
    """Allow and deny lists (see the module's description)."""

    model_config = ConfigDict(extra="forbid")

    default: Literal["deny", "allow"] = Field(default="deny", description=(
        "what a connection that matches no allow entry gets: deny (the default) or allow"))
    allow: list[Target] = Field(default_factory=list, max_length=1024, description=(
        "host names, '*.' wildcards, addresses and CIDRs the sandbox may reach"))
    deny: list[Target] = Field(default_factory=list, max_length=1024, description=(
        "host names, wildcards, addresses and CIDRs it may not reach (a deny wins over an allow)"))
    ports: list[Port] = Field(default_factory=list, max_length=1024, description=(
        "destination ports or ranges 'low-high' it may use; empty: any"))
    proxy: EgressProxy | None = Field(default=None, description=(
        "a SOCKS5 proxy allowed connections go through (fail closed: never direct when it is down)"))

    @field_validator("allow", "deny")
    @classmethod
    def _targets(cls, values: list[str]) -> list[str]:
        for v in values:
            parse_target(v)
        return values

    @field_validator("ports")
    @classmethod
    def _ports(cls, values: list[int | str]) -> list[int | str]:
        for v in values:
            parse_port(v)
        return values


EgressSpec = Union[Literal["none", "all"], EgressRules]


def normalise(policy: EgressSpec | dict[str, Any] | None) -> EgressRules:
    """Rules for any way of writing a policy (None and "none": nothing; "all": everything)."""
    if policy is None or policy == "none":
        return EgressRules()
    if policy == "all":
        return EgressRules(default="allow")
    if isinstance(policy, dict):
        return EgressRules.model_validate(policy)
    return policy


class EgressUpdate(BaseModel):
    """A new policy for a running sandbox (``POST /sandboxes/{id}/egress``)."""

    model_config = ConfigDict(extra="forbid")

    egress: EgressSpec = Field(description="'none', 'all' or rules (allow, deny, ports, default)")
