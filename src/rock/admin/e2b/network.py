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
``${e2b.secrets.<name>}`` being the caller's secret (``/secrets``) and ``${e2b.identity.tokens.<name>}``
a token of the create's ``iam`` (``{"tokens": {name: {"audience", "tokenType": "JWT-SVID"}}}``),
minted by this admin per request (``rock.runtime.egress.identity``). ``egressProxy``
(``{"address": "host:port", "username"?, "password"?}``) is a SOCKS5 proxy the gate sends allowed
connections through, failing closed; TLS to the proxy (``tls``) is refused. ``update_network``
replaces all of it, ``rules`` and ``egressProxy`` included (an omitted one is cleared), as E2B does.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import ValidationError

from rock.actions.egress import EgressProxy, EgressRules, parse_target
from rock.errors import E2BError

ALL_TRAFFIC = ("0.0.0.0/0", "::/0")
# Fields of E2B's network config this door honours, and those it cannot (and why).
HONOURED = ("allowOut", "denyOut", "dnsServers", "allow_out", "deny_out", "dns_servers", "rules", "egressProxy",
            "egress_proxy")
REFUSED = {"maskRequestHost": "host masks are not supported", "allowPublicTraffic": "public sandbox URLs are not served"}


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
        proxy = egress.get("proxy")
        if isinstance(proxy, dict):  # never its password, as E2B's detail
            out["egressProxy"] = {k: v for k, v in proxy.items() if k in ("address", "username") and v is not None}
    if headers:
        out["rules"] = {host: [{"transform": {"headers": dict(h)}}] for host, h in headers.items()}
    return out


def update_rules(network: dict) -> tuple[EgressRules, dict[str, dict[str, str]]]:
    """``PUT /sandboxes/{id}/network``: the whole egress config again (an omitted field is cleared,
    so an empty body allows everything, sends directly and sets no header) and the transforms'
    headers per host that replace the sandbox's."""
    return rules_of(network, None) or EgressRules(default="allow"), transforms_of(network) or {}


# What E2B lets a token name be: it is put in "${e2b.identity.tokens.<name>}".
_TOKEN_NAME = re.compile(r"^[^{}\x00-\x1f\x7f]{1,128}$")
TOKEN_TYPES = ("JWT-SVID",)


def iam_of(body: dict) -> dict[str, dict[str, str]] | None:
    """E2B's ``iam`` of a create: the tokens' definitions (None without any), or a 400."""
    iam = body.get("iam")
    if iam in (None, {}):
        return None
    tokens = iam.get("tokens") if isinstance(iam, dict) else None
    if not isinstance(tokens, dict) or set(iam) - {"tokens"}:
        raise E2BError(400, "iam must be {\"tokens\": {name: {\"audience\", \"tokenType\"}}}")
    out = {}
    for name, token in tokens.items():
        if not isinstance(name, str) or not _TOKEN_NAME.match(name):
            raise E2BError(400, f"iam.tokens: {name!r}: a name of 1-128 characters without '{{', '}}' or controls")
        if (not isinstance(token, dict) or set(token) - {"audience", "tokenType"}
                or not isinstance(token.get("audience"), str) or not 0 < len(token["audience"]) <= 1024):
            raise E2BError(400, f"iam.tokens.{name}: {{\"audience\": a non-empty string, \"tokenType\"}}")
        if token.get("tokenType") not in TOKEN_TYPES:
            raise E2BError(400, f"iam.tokens.{name}.tokenType: {token.get('tokenType')!r} is not one of "
                                f"{', '.join(TOKEN_TYPES)}")
        out[name] = {"audience": token["audience"], "tokenType": token["tokenType"]}
    return out or None


def _proxy(network: dict) -> EgressProxy | None:
    proxy = network.get("egressProxy", network.get("egress_proxy"))
    if proxy is None:
        return None
    if not isinstance(proxy, dict):
        raise E2BError(400, "network.egressProxy must be an object with 'address' (host:port)")
    tls = proxy.get("tls")
    if tls not in (None, False) and not (isinstance(tls, dict) and tls.get("enabled") is False):
        raise E2BError(400, "network.egressProxy.tls: TLS to the proxy is not supported; a plain SOCKS5 "
                            "proxy (address, username, password) is")
    try:
        return EgressProxy.model_validate({k: v for k, v in proxy.items() if k != "tls"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise E2BError(400, f"network.egressProxy.{where}: {first['msg']} (address is host:port, as "
                            "'proxy.example.com:1080')") from None


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
    proxy = _proxy(network)
    try:
        return EgressRules(default="deny" if closed else "allow", allow=allow,
                           deny=[d for d in deny if d.strip() not in ALL_TRAFFIC], proxy=proxy)
    except ValueError as exc:
        raise E2BError(400, f"network.allowOut: {exc}") from None
