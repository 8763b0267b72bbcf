"""The gate: one per worker, the only way out of every gated sandbox (see ``rock.runtime.egress``).

A TCP listener takes every connection the sandboxes make (nftables redirects them here), and a
UDP resolver every DNS question. Each is attributed to its sandbox by its source address, which
only that sandbox's veth can carry (the host's ``rp_filter`` aside, the veth is a point-to-point
link whose far end is the sandbox; a spoofed source would only reach this same gate)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import ssl
import time

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from rock.runtime.egress.broker import Broker
from rock.runtime.egress.peek import (
    MAX_PEEK,
    Mismatch,
    http_host,
    is_literal,
    sni,
    tls_length,
)
from rock.runtime.egress.rules import Compiled, host_networks_fresh, refresh_host_networks
from rock.runtime.egress.socks import ProxyError, open_via

log = logging.getLogger("rock.runtime.egress")

SO_ORIGINAL_DST = 80
PEEK_TIMEOUT = 2.0  # a client that speaks first (TLS, HTTP) has spoken by then; else it is dialled by address
DNS_TTL = 30
LOOKUPS_KEPT = 4096  # names looked up through the host's resolver, kept for DNS_TTL (then forgotten)


class Relay:
    """One open connection through the gate: what it said, where it went, and both its ends."""

    __slots__ = ("name", "port", "target", "ends")

    def __init__(self, name: str | None, port: int, target: str, ends: tuple[asyncio.StreamWriter, ...]):
        self.name, self.port, self.target, self.ends = name, port, target, ends

    def cut(self) -> None:
        for end in self.ends:
            end.transport.abort()  # at once, unsent data dropped: the policy no longer lets it through


class Entry:
    """One gated sandbox: its policy, the addresses the resolver gave it for allowed names, and
    its open connections."""

    def __init__(self, sandbox_id: str, policy: Compiled):
        self.sandbox_id = sandbox_id
        self.policy = policy
        self.resolved: dict[str, set[str]] = {}  # address -> names it was given for
        self.relays: set[Relay] = set()
        self.brokered: list[dict] = []  # its secrets' placeholders and hosts (``rock.runtime.egress.broker``)

    def change(self, policy: Compiled) -> int:
        """Put ``policy`` in force: the names it denies are forgotten, and the open connections
        it would not let through now are cut (how many is returned)."""
        self.policy = policy
        self.resolved = {a: kept for a, names in self.resolved.items()
                         if (kept := {n for n in names if policy.host_allowed(n)})}
        cut = [r for r in self.relays if not self.lets(r)]
        for relay in cut:
            relay.cut()
        return len(cut)

    def lets(self, relay: Relay) -> bool:
        """Whether the policy in force lets ``relay`` through (as ``Gate.decide`` judged it when
        it opened: by its name where it said one, else by the address it went to)."""
        policy, addr = self.policy, ipaddress.ip_address(relay.target)
        if not policy.port_allowed(relay.port):
            return False
        if relay.name and not is_literal(relay.name):
            return policy.host_allowed(relay.name) and policy.address_usable(addr)
        resolved = any(policy.host_allowed(n) for n in self.resolved.get(relay.target, ()))
        return policy.address_allowed(addr, resolved)


class Gate:
    def __init__(self, static_hosts: dict[str, str] | None = None):
        self.static_hosts = {k.rstrip(".").lower(): v for k, v in (static_hosts or {}).items()}
        self.entries: dict[str, Entry] = {}  # sandbox's veth address -> entry
        self._looked_up: dict[str, tuple[float, list[str]]] = {}  # name -> (until, addresses)
        self.tcp_port = 0
        self.dns_port = 0
        self._server: asyncio.base_events.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.broker: Broker | None = None  # credential brokering, where the worker has a vault

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, "0.0.0.0", 0, backlog=1024)
        self.tcp_port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Dns(self), local_addr=("0.0.0.0", 0))
        self.dns_port = self._udp.get_extra_info("sockname")[1]
        log.info("egress gate on tcp %d, dns udp %d", self.tcp_port, self.dns_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    # -- names -------------------------------------------------------------------------------

    async def resolve(self, entry: Entry, name: str) -> list[str]:
        """Addresses for an allowed ``name`` that the policy lets the sandbox dial ([] if denied)."""
        name = name.rstrip(".").lower()
        if not entry.policy.host_allowed(name):
            return []
        await refresh_host_networks()
        found = self._known(name)
        if found is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(name, None, family=socket.AF_INET,
                                                                     type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                return []
            found = list(dict.fromkeys(info[4][0] for info in infos))
            if len(self._looked_up) >= LOOKUPS_KEPT:
                self._looked_up.clear()
            self._looked_up[name] = (time.monotonic() + DNS_TTL, found)
        return self._usable(entry, name, found)

    def resolve_now(self, entry: Entry, name: str) -> list[str] | None:
        """``resolve`` where it needs no wait (a name of ``egress_hosts`` or looked up lately, the
        host's addresses read lately); None where it does."""
        name = name.rstrip(".").lower()
        if not entry.policy.host_allowed(name):
            return []
        found = self._known(name) if host_networks_fresh() else None
        return None if found is None else self._usable(entry, name, found)

    def _known(self, name: str) -> list[str] | None:
        """The addresses of ``name`` without asking anyone (the operator's, or a lookup within its
        TTL, so a connection dials what the sandbox was just told), None if unknown."""
        if name in self.static_hosts:
            return [self.static_hosts[name]]
        kept = self._looked_up.get(name)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None

    @staticmethod
    def _usable(entry: Entry, name: str, found: list[str]) -> list[str]:
        usable = [a for a in found if entry.policy.address_usable(ipaddress.ip_address(a))]
        for a in usable:
            entry.resolved.setdefault(a, set()).add(name)
        return usable

    @staticmethod
    def _parse(query: bytes) -> DNSRecord | None:
        try:
            return DNSRecord.parse(query)
        except Exception:  # noqa: BLE001 - not DNS: no answer
            return None

    def answer_now(self, entry: Entry, query: bytes) -> bytes | None:
        """``answer_async``'s answer where every name in it is known without a wait (the usual
        case: the A and AAAA questions of one lookup, in the datagrams' own callback); None else."""
        request = self._parse(query)
        if request is None:
            return b""
        found = {}
        for name in _asked(request):
            if (addrs := self.resolve_now(entry, name)) is None:
                return None
            found[name] = addrs
        return self._reply(entry, request, found)

    async def answer_async(self, entry: Entry | None, query: bytes) -> bytes:
        """Our resolver's answer: allowed names' usable addresses, NXDOMAIN for the rest."""
        request = self._parse(query)
        if request is None:
            return b""
        if entry is None:
            reply = request.reply()
            reply.header.rcode = RCODE.REFUSED
            return reply.pack()
        found = {name: await self.resolve(entry, name) for name in _asked(request)}
        return self._reply(entry, request, found)

    @staticmethod
    def _reply(entry: Entry, request: DNSRecord, found: dict[str, list[str]]) -> bytes:
        """The answer to ``request`` given the addresses ``found`` for its A questions' names."""
        reply = request.reply()
        for q in request.questions:
            name = str(q.qname).rstrip(".")
            if not entry.policy.host_allowed(name) or is_literal(name):
                reply.header.rcode = RCODE.NXDOMAIN
                continue
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                addrs = found.get(str(q.qname), [])
                if not addrs:
                    reply.header.rcode = RCODE.NXDOMAIN
                for a in addrs:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(a), ttl=DNS_TTL))
            # AAAA and the rest: no data (the sandbox has no IPv6 and nothing else is served)
        return reply.pack()

    # -- connections ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        try:
            sock = writer.get_extra_info("socket")
            src = writer.get_extra_info("peername")[0]
            entry = self.entries.get(src)
            if entry is None:
                return
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port = struct.unpack("!H", raw[2:4])[0]
            dst = socket.inet_ntoa(raw[4:8])
            if port == 53:  # DNS over TCP, to whatever resolver address: ours answers
                await self._dns_tcp(entry, reader, writer)
                return
            first, name = await self._peek(reader)
            target = await self.decide(entry, name, dst, port)
            if target is None:
                log.info("egress: sandbox %s refused %s:%d (name %s)", entry.sandbox_id, dst, port, name)
                return
            if self.broker is not None and self.broker.wants(entry.brokered, name):
                brokered = Relay(name, port, target, (writer,))  # a policy change cuts it like any other
                entry.relays.add(brokered)
                try:
                    await self.broker.relay(entry.brokered, name or "", first, reader, writer, target, port,
                                            tls=tls_length(first) is not None,
                                            dial=lambda tls, host: self.dial(entry, target, port, tls, host),
                                            subject=entry.sandbox_id)
                except (OSError, asyncio.TimeoutError) as exc:  # never the request itself: it may hold a value
                    log.info("egress: sandbox %s: relay to %s:%d failed: %s", entry.sandbox_id, name, port,
                             type(exc).__name__)
                finally:
                    entry.relays.discard(brokered)
                return
            try:
                up_reader, upstream = await self.dial(entry, target, port)
            except (OSError, asyncio.TimeoutError) as exc:
                if isinstance(exc, ProxyError):
                    log.info("egress: sandbox %s: %s:%d not sent: %s", entry.sandbox_id, target, port, exc)
                return
            if first:
                upstream.write(first)
            relay = Relay(name, port, target, (writer, upstream))
            entry.relays.add(relay)
            try:
                await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
            finally:
                entry.relays.discard(relay)
        except (Mismatch, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _peek(self, reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
        """The first bytes the client sent (within PEEK_TIMEOUT) and the host name they say."""
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PEEK_TIMEOUT
        while len(data) < MAX_PEEK:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(MAX_PEEK - len(data)), left)
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            need = tls_length(data)
            if need is not None:
                if len(data) >= need:
                    return data, sni(data[:need])
                continue
            if b"\r\n\r\n" in data:
                return data, http_host(data)
            if not data[:16].split(b" ")[0].isalpha():
                break  # neither TLS nor an HTTP request line: no name
        return data, None

    async def dial(self, entry: Entry, target: str, port: int, tls: ssl.SSLContext | None = None,
                   server_hostname: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The upstream connection of a decided one: through the policy's SOCKS5 proxy where it
        names one (a ProxyError when that fails: never direct), else straight to ``target``."""
        proxy = entry.policy.rules.proxy
        if proxy is not None:
            return await open_via(proxy.model_dump(), target, port, self.static_hosts, tls, server_hostname)
        return await asyncio.wait_for(asyncio.open_connection(target, port, ssl=tls, server_hostname=server_hostname),
                                      10)

    async def decide(self, entry: Entry, name: str | None, dst: str, port: int) -> str | None:
        """The address to dial for a connection to ``dst``:``port`` that says ``name``, or None."""
        policy = entry.policy
        if not policy.port_allowed(port):
            return None
        await refresh_host_networks()
        addr = ipaddress.ip_address(dst)
        if name and not is_literal(name):
            addrs = await self.resolve(entry, name)
            if not addrs:
                return None
            return dst if dst in addrs else addrs[0]  # never an address the name does not have
        if name and ipaddress.ip_address(name) != addr:
            return None  # a literal Host that is not where the connection goes
        resolved = any(policy.host_allowed(n) for n in entry.resolved.get(dst, ()))
        return dst if policy.address_allowed(addr, resolved) else None

    async def _dns_tcp(self, entry: Entry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))[0]
                query = await asyncio.wait_for(reader.readexactly(size), 30)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                return
            answer = await self.answer_async(entry, query)
            if not answer:
                return
            writer.write(struct.pack("!H", len(answer)) + answer)
            await writer.drain()


def _asked(request: DNSRecord) -> list[str]:
    """The names whose addresses ``request`` asks for (A or ANY; never an address literal)."""
    return [str(q.qname) for q in request.questions
            if q.qtype in (QTYPE.A, QTYPE.ANY) and not is_literal(str(q.qname).rstrip("."))]


class _Dns(asyncio.DatagramProtocol):
    def __init__(self, gate: Gate):
        self.gate = gate
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        entry = self.gate.entries.get(addr[0])
        if entry is None:
            return  # only gated sandboxes are answered
        answer = self.gate.answer_now(entry, data)
        if answer is None:  # a name to look up first
            asyncio.ensure_future(self._reply(entry, data, addr))
        elif answer and self.transport is not None:
            self.transport.sendto(answer, addr)

    async def _reply(self, entry: Entry, data: bytes, addr) -> None:
        answer = await self.gate.answer_async(entry, data)
        if answer and self.transport is not None:
            self.transport.sendto(answer, addr)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(262144)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
