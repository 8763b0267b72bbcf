"""The gate's upstream through an operator's SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 user/password).

Used after the policy decided a connection: the proxy is asked for the address the gate decided
(never the name, so the proxy cannot resolve it elsewhere), and any failure (the proxy unreachable,
not SOCKS5, refusing) fails the connection: traffic never falls back to going out directly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct

from rock.runtime.egress.rules import forbidden, refresh_host_networks

TIMEOUT = 10.0
_REPLIES = {1: "general failure", 2: "not allowed by the ruleset", 3: "network unreachable", 4: "host unreachable",
            5: "connection refused", 6: "TTL expired", 7: "command not supported", 8: "address type not supported"}


class ProxyError(OSError):
    """The proxy could not be used (unreachable, not SOCKS5, refused the request)."""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port); ValueError naming it otherwise."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host.lower(), int(port)


async def _proxy_addresses(host: str, static_hosts: dict[str, str]) -> list[str]:
    """Where the proxy's name points now (pinned for this connection), none of them the host's,
    the admin's or another sandbox's."""
    try:
        found = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host in static_hosts:
            found = [static_hosts[host]]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET,
                                                                     type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise ProxyError(f"the egress proxy {host!r} does not resolve") from exc
            found = list(dict.fromkeys(i[4][0] for i in infos))
    await refresh_host_networks()
    usable = [a for a in found if not forbidden(ipaddress.ip_address(a))]
    if not usable:
        raise ProxyError(f"the egress proxy {host!r} is an address of the host, the admin or a sandbox")
    return usable


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str, port: int,
                     username: str | None, password: str | None) -> None:
    methods = b"\x00\x02" if username is not None else b"\x00"
    writer.write(b"\x05" + bytes([len(methods)]) + methods)
    await writer.drain()
    version, method = await reader.readexactly(2)
    if version != 5 or method == 0xFF or (method == 2 and username is None) or method not in (0, 2):
        raise ProxyError("the egress proxy does not speak SOCKS5 or accepts none of our methods")
    if method == 2:
        user, secret = (username or "").encode(), (password or "").encode()
        writer.write(b"\x01" + bytes([len(user)]) + user + bytes([len(secret)]) + secret)
        await writer.drain()
        if (await reader.readexactly(2))[1] != 0:
            raise ProxyError("the egress proxy refused its username and password")
    addr = ipaddress.ip_address(target)
    kind, packed = (1, addr.packed) if addr.version == 4 else (4, addr.packed)
    writer.write(b"\x05\x01\x00" + bytes([kind]) + packed + struct.pack("!H", port))
    await writer.drain()
    version, reply, _, atyp = await reader.readexactly(4)
    if version != 5:
        raise ProxyError("the egress proxy's reply is not SOCKS5")
    if reply != 0:
        raise ProxyError(f"the egress proxy refused the connection: {_REPLIES.get(reply, reply)}")
    size = {1: 4, 4: 16}.get(atyp)
    if size is None:
        if atyp != 3:
            raise ProxyError("the egress proxy's reply is malformed")
        size = (await reader.readexactly(1))[0]
    await reader.readexactly(size + 2)  # the bound address, unused


async def open_via(proxy: dict, target: str, port: int, static_hosts: dict[str, str],
                   tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``target``:``port`` (an address) through ``proxy`` (``EgressProxy`` as a
    dict), TLS to ``server_hostname`` over it where ``tls`` is given. ProxyError if not."""
    host, proxy_port = split_address(proxy["address"])
    last: Exception | None = None
    for addr in await _proxy_addresses(host, static_hosts):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, proxy_port), TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            last = exc
            continue
        try:
            await asyncio.wait_for(_handshake(reader, writer, target, port, proxy.get("username"),
                                              proxy.get("password")), TIMEOUT)
            if tls is not None:
                await asyncio.wait_for(writer.start_tls(tls, server_hostname=server_hostname), TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError) as exc:
            writer.close()
            if isinstance(exc, ProxyError):
                raise
            raise ProxyError(f"the egress proxy failed: {type(exc).__name__}") from None
        return reader, writer
    raise ProxyError(f"the egress proxy {proxy['address']} is unreachable: {type(last).__name__}")
