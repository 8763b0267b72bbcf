"""The host name a connection's first bytes say: the TLS ClientHello's SNI or the HTTP request's
``Host`` (and a proxy-style request's target, which must agree with it)."""

from __future__ import annotations

import ipaddress
import struct
from urllib.parse import urlsplit

MAX_PEEK = 16384


class Mismatch(ValueError):
    """The request names two different hosts (``Host`` against an absolute URL or CONNECT)."""


def tls_length(data: bytes) -> int | None:
    """How many bytes the first TLS record needs (None: not a TLS handshake)."""
    if len(data) >= 5 and data[0] == 0x16 and data[1] == 3:
        return 5 + struct.unpack("!H", data[3:5])[0]
    return None


def sni(data: bytes) -> str | None:
    """The server_name of a ClientHello in ``data`` (one record), or None."""
    try:
        if tls_length(data) is None or data[5] != 1:
            return None
        i = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        i += 1 + data[i]  # session id
        i += 2 + struct.unpack("!H", data[i:i + 2])[0]  # cipher suites
        i += 1 + data[i]  # compression methods
        end = i + 2 + struct.unpack("!H", data[i:i + 2])[0]
        i += 2
        while i + 4 <= end:
            kind, size = struct.unpack("!HH", data[i:i + 4])
            body = data[i + 4:i + 4 + size]
            if kind == 0:  # server_name: list length, then (type, length, name) entries
                j = 2
                while j + 3 <= len(body):
                    name_type, n = body[j], struct.unpack("!H", body[j + 1:j + 3])[0]
                    if name_type == 0:
                        return body[j + 3:j + 3 + n].decode("ascii").lower()
                    j += 3 + n
            i += 4 + size
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


def _host_only(authority: str) -> str:
    authority = authority.strip()
    if authority.startswith("["):
        return authority[1:authority.find("]")].lower()
    return authority.rsplit(":", 1)[0].lower() if authority.count(":") == 1 else authority.lower()


def http_host(data: bytes) -> str | None:
    """The host an HTTP/1 request head names (its ``Host``, the target of an absolute URL or a
    CONNECT); None when ``data`` is no request head. Mismatch when they differ."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/"):
        return None
    names = set()
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "host":
            names.add(_host_only(value))
    if method.upper() == "CONNECT":
        names.add(_host_only(target))
    elif not target.startswith("/") and urlsplit(target).netloc:  # absolute form, as to a proxy
        names.add((urlsplit(target).hostname or "").lower())
    if len(names) > 1:
        raise Mismatch(f"the request names {sorted(names)}")
    return names.pop() if names else None


def is_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False
