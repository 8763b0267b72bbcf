"""E2B's network options as ROCK egress policies (``rock.admin.sandboxes.egress``).

E2B's wire (``NewSandbox.network``, ``PUT /sandboxes/{id}/network``): ``allowOut`` (addresses,
CIDRs, host names, ``*.`` wildcards), ``denyOut`` (addresses and CIDRs only), ``dnsServers``
(IPv4 addresses), and ``allowInternetAccess`` on create (false is ``denyOut: ["0.0.0.0/0"]``).
Without ``allowOut`` everything not denied is allowed; an allowed entry wins over a deny of all
traffic. Here a deny of ``0.0.0.0/0`` makes the default "deny", the other deny entries stay
denies (a deny names addresses no allowed name may resolve to). ``dnsServers`` is checked and
needs nothing more: every DNS question, to any server, is answered by the gate's resolver from
the same policy. Per-host ``rules`` (``{host: [{"transform": {"headers": {...}}}]}``) are set by
the egress relay on every request to that host (``rock.runtime.egress.broker``), a value's
``${e2b.secrets.<name>}`` being the caller's secret (``/secrets``); ``egressProxy`` is refused.
"""

from __future__ import annotations

import ipaddress

from rock.actions.egress import EgressRules, parse_target
from rock.admin.e2b.common import E2BError

ALL_TRAFFIC = ("0.0.0.0/0", "::/0")
# Fields of E2B's network config this door honours, and those it cannot (and why).
HONOURED = ("allowOut", "denyOut", "dnsServers", "allow_out", "deny_out", "dns_servers", "rules")
REFUSED = {"egressProxy": "an egress SOCKS5 proxy is not supported", "egress_proxy": "an egress proxy is not supported",
           "maskRequestHost": "host masks are not supported", "allowPublicTraffic": "public sandbox URLs are not served"}


def _list(network: dict, name: str, snake: str) -> list[str] | None:
    value = network.get(name, network.get(snake))
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise E2BError(400, f"network.{name} must be a list of strings")
    return value


def internet_of(spec: dict) -> bool:
    """E2B's ``allowInternetAccess`` of a sandbox: its network, or an egress policy open by default."""
    egress = spec.get("egress")
    return bool(spec.get("network")) or egress == "all" or (isinstance(egress, dict) and egress.get("default") == "allow")


def config_of(spec: dict) -> dict | None:
    """A sandbox's ``network`` as E2B's detail reports it: its egress lists (a closed default as
    ``denyOut`` of all traffic) and its per-host transforms as given (secrets stay references);
    None for a sandbox created without one."""
    egress, headers = spec.get("egress"), spec.get("egress_headers") or {}
    if not isinstance(egress, dict) and not headers:
        return None
    out: dict = {}
    if isinstance(egress, dict):
        out["allowOut"] = list(egress.get("allow") or [])
        out["denyOut"] = list(egress.get("deny") or []) + ([ALL_TRAFFIC[0]] if egress.get("default") == "deny" else [])
    if headers:
        out["rules"] = {host: [{"transform": {"headers": dict(h)}}] for host, h in headers.items()}
    return out


def update_rules(network: dict) -> EgressRules:
    """``PUT /sandboxes/{id}/network``: the whole egress config again (an omitted field is cleared,
    so an empty body allows everything). Transforms are a sandbox's from its create."""
    if isinstance(network, dict) and network.get("rules"):
        raise E2BError(400, "network.rules: per-host transforms are set when the sandbox is created; "
                            "they cannot change while it runs here")
    return rules_of(network, None) or EgressRules(default="allow")


def transforms_of(network: dict | None) -> dict[str, dict[str, str]] | None:
    """``network.rules`` as the headers the egress relay sets per host (None without any)."""
    rules = (network or {}).get("rules") if isinstance(network, dict) else None
    if rules in (None, {}):
        return None
    if not isinstance(rules, dict):
        raise E2BError(400, "network.rules must be an object: host -> a list of rules")
    out: dict[str, dict[str, str]] = {}
    for host, items in rules.items():
        try:
            parsed = parse_target(host)
        except ValueError as exc:
            raise E2BError(400, f"network.rules: {exc}") from None
        if not isinstance(parsed, str):
            raise E2BError(400, f"network.rules: {host!r}: transforms are matched on host names, not addresses")
        if not isinstance(items, list):
            raise E2BError(400, f"network.rules.{host} must be a list of rules")
        headers: dict[str, str] = {}
        for rule in items:
            transform = rule.get("transform") if isinstance(rule, dict) else None
            if transform is None:
                continue
            found = transform.get("headers") if isinstance(transform, dict) else None
            if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
                raise E2BError(400, f"network.rules.{host}: a transform's headers must map names to strings")
            headers.update(found)
        if headers:
            out[parsed] = headers
    return out or None


def rules_of(network: dict | None, internet: bool | None) -> EgressRules | None:
    """The egress rules E2B's ``network`` and ``allowInternetAccess`` ask for; None when neither
    says anything (the sandbox's network as before)."""
    if network in (None, {}) and internet is None:
        return None
    network = network or {}
    if not isinstance(network, dict):
        raise E2BError(400, "network must be an object")
    for key, why in REFUSED.items():
        if network.get(key) not in (None, {}, [], True if key == "allowPublicTraffic" else None):
            raise E2BError(400, f"network.{key} cannot be honoured: {why}")
    unknown = sorted(set(network) - set(HONOURED) - set(REFUSED) - {"httpsPorts", "https_ports"})
    if unknown:
        raise E2BError(400, f"network: unknown field(s) {', '.join(unknown)}")
    allow = _list(network, "allowOut", "allow_out") or []
    deny = _list(network, "denyOut", "deny_out") or []
    for server in _list(network, "dnsServers", "dns_servers") or []:
        try:
            ipaddress.IPv4Address(server)
        except ValueError:
            raise E2BError(400, f"network.dnsServers: {server!r} is not an IPv4 address") from None
    for entry in deny:
        if entry.strip() in ALL_TRAFFIC:
            continue
        try:
            parsed = parse_target(entry)
        except ValueError as exc:
            raise E2BError(400, f"network.denyOut: {exc}") from None
        if isinstance(parsed, str):
            raise E2BError(400, f"network.denyOut: {entry!r}: deny rules take addresses and CIDRs, not host names")
    closed = internet is False or any(d.strip() in ALL_TRAFFIC for d in deny)
    try:
        return EgressRules(default="deny" if closed else "allow", allow=allow,
                           deny=[d for d in deny if d.strip() not in ALL_TRAFFIC])
    except ValueError as exc:
        raise E2BError(400, f"network.allowOut: {exc}") from None
