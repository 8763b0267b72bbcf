"""A policy compiled for the gate: which names, addresses and ports one sandbox may reach, and
the addresses no policy reaches (the host's own, its loopback, other sandboxes' networks)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import time

from rock.actions.egress import EgressRules, parse_port, parse_target

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

# The veth pairs of gated sandboxes are carved out of this range (one /30 each).
EGRESS_RANGE = ipaddress.ip_network("10.231.0.0/16")
_ALWAYS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128", "fe80::/10",
                                             "224.0.0.0/4", "255.255.255.255/32", str(EGRESS_RANGE))]
_cache: tuple[float, list[Net]] | None = None


def _ip_json(*args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def host_networks(max_age: float = 5.0) -> list[Net]:
    """What no sandbox may reach whatever its policy says: every address of the host, loopback,
    link-local and multicast, the gated sandboxes' range, and the subnets of the host's
    interfaces other than the one its default route leaves by (container bridges, other
    sandboxes' veths: where the admin and the other sandboxes live). Cached for ``max_age`` s."""
    global _cache
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < max_age:
        return _cache[1]
    default = {r.get("dev") for r in _ip_json("route", "show", "default")} | {
        r.get("dev") for r in _ip_json("-6", "route", "show", "default")}
    nets = list(_ALWAYS)
    for link in _ip_json("addr"):
        for a in link.get("addr_info", []):
            try:
                nets.append(ipaddress.ip_network(a["local"]))
                if link.get("ifname") not in default and link.get("ifname") != "lo":
                    nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
            except (KeyError, ValueError):
                continue
    _cache = (now, nets)
    return nets


async def refresh_host_networks(max_age: float = 5.0) -> None:
    """Re-read the host's addresses off the event loop when the cache is older than ``max_age``
    (the gate calls this before deciding, so ``forbidden`` never runs ``ip`` on the loop)."""
    if not host_networks_fresh(max_age):
        await asyncio.to_thread(host_networks, 0)


def host_networks_fresh(max_age: float = 5.0) -> bool:
    """Whether ``host_networks`` was read within ``max_age`` s (no ``refresh_host_networks`` due)."""
    return _cache is not None and time.monotonic() - _cache[0] < max_age


def forbidden(addr: Addr) -> bool:
    """Whether ``addr`` is the host's, the admin's or another sandbox's (see ``host_networks``)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    nets = _cache[1] if _cache is not None else host_networks()
    return any(addr in net for net in nets if net.version == addr.version)


def names_host(target: str, host_names: set[str]) -> str | None:
    """Why a policy entry names the host (or the admin on it), or None."""
    parsed = parse_target(target)
    if isinstance(parsed, str):
        bare = parsed.removeprefix("*.")
        if bare in host_names or parsed == "*." or bare == "localhost" or bare.endswith(".localhost"):
            return f"{target!r} names this host"
        return None
    for net in host_networks(0 if parsed.prefixlen == parsed.max_prefixlen else 5.0):
        if net.version == parsed.version and parsed.overlaps(net) and parsed.prefixlen >= net.prefixlen:
            return f"{target!r} is inside {net}, an address of the host, the admin or other sandboxes"
    return None


def _host_match(name: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.startswith("*."):
            if name.endswith(p[1:]):
                return True
        elif name == p:
            return True
    return False


class Compiled:
    """One sandbox's policy as the gate asks it."""

    def __init__(self, rules: EgressRules, deny_always: list[str] = ()):
        self.rules = rules
        self.allow_all = rules.default == "allow"
        allow = [parse_target(t) for t in rules.allow]
        deny = [parse_target(t) for t in [*rules.deny, *deny_always]]
        self.allow_hosts = [t for t in allow if isinstance(t, str)]
        self.allow_nets = [t for t in allow if not isinstance(t, str)]
        self.deny_hosts = [t for t in deny if isinstance(t, str)]
        self.deny_nets = [t for t in deny if not isinstance(t, str)]
        self.ports = [parse_port(p) for p in rules.ports]

    @property
    def closed(self) -> bool:
        """Nothing at all is allowed (the resolver answers nothing either)."""
        return not self.allow_all and not rules_any(self)

    def port_allowed(self, port: int) -> bool:
        return not self.ports or any(lo <= port <= hi for lo, hi in self.ports)

    def host_allowed(self, name: str) -> bool:
        name = name.rstrip(".").lower()
        if _host_match(name, self.deny_hosts):
            return False
        return self.allow_all or _host_match(name, self.allow_hosts)

    def address_usable(self, addr: Addr) -> bool:
        """Neither the host's nor denied: what an allowed name may resolve to."""
        return not forbidden(addr) and not any(addr in n for n in self.deny_nets if n.version == addr.version)

    def address_allowed(self, addr: Addr, resolved_for_allowed: bool = False) -> bool:
        """An address dialled as is (no name said): usable, and allowed by a CIDR, by the
        default, or because our resolver gave it for an allowed name."""
        if not self.address_usable(addr):
            return False
        return (self.allow_all or resolved_for_allowed
                or any(addr in n for n in self.allow_nets if n.version == addr.version))


def rules_any(c: Compiled) -> bool:
    return bool(c.allow_hosts or c.allow_nets)
