"""Egress policies at the admin: checked (never the host, never the admin), turned into the
worker's spec, and changed on a running sandbox. One code path for every door (ROCK's start and
its egress route, E2B's ``network``)."""

from __future__ import annotations

import re
import socket

from rock.actions.egress import EgressRules, EgressSpec, normalise
from rock.admin.secrets import SecretVault
from rock.errors import BadRequest, Conflict
from rock.runtime.egress.broker import TRUST_ENV, bound_to
from rock.runtime.egress.rules import names_host


def _host_names() -> set[str]:
    names = {"localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return names


def checked(policy: EgressSpec | dict | None) -> EgressRules:
    """The policy's rules, or a BadRequest naming the first entry that names the host, its
    loopback, the admin or the sandboxes' own networks (which no policy may open)."""
    try:
        rules = normalise(policy)
    except ValueError as exc:
        raise BadRequest(f"egress: {exc}") from None
    hosts = _host_names()
    if rules.proxy is not None:
        why = names_host(rules.proxy.address.rpartition(":")[0], hosts)
        if why:
            raise BadRequest(f"egress.proxy: {why}; the proxy is one outside this host")
    for target in rules.allow:
        why = names_host(target, hosts)
        if why:
            raise BadRequest(f"egress: {why}; the host, the admin and other sandboxes are never reachable")
    return rules


def spec_egress(network: bool, policy: EgressSpec | dict | None) -> dict | None:
    """What the worker's spec carries for a start request: None without a policy (the sandbox's
    ``network`` as before), else the checked rules (the sandbox then has its own namespace)."""
    if policy is None:
        return None
    if network:
        raise BadRequest("egress and network=true do not go together: network=true is the backend's own "
                         "network without a gate; leave network unset and give an egress policy ('all' for everything)")
    return checked(policy).model_dump()


async def update(svc, sandbox_id: str, owner: str | None, policy: EgressSpec | dict,
                 headers: dict[str, dict[str, str]] | None = None) -> EgressRules:
    """Give a running sandbox the caller owns a new policy (and, where ``headers`` is given, new
    per-host headers for the relay, replacing the old ones); on any refusal the old one stays."""
    rules = checked(policy)
    record = await svc.lookup(sandbox_id, owner)
    items = None if headers is None else header_items(svc.secrets, owner, headers, record.spec.get(IAM_KEY))
    async with svc.lock(sandbox_id):
        if record.state != "running":
            raise Conflict(f"sandbox {sandbox_id} is {record.state}; only a running sandbox's egress can change")
        if record.spec.get("network"):
            raise Conflict(f"sandbox {sandbox_id} was started with network=true (no gate); start one with an "
                           "egress policy instead")
        change = getattr(svc.worker, "update_egress", None)
        if change is None:
            raise BadRequest("changing egress on a running sandbox is not available on this deployment")
        if items is None:
            await change(sandbox_id, rules.model_dump())
            record.spec = {**record.spec, "egress": rules.model_dump()}
        else:
            await change(sandbox_id, rules.model_dump(), items)
            record.spec = {**record.spec, "egress": rules.model_dump(), "egress_headers": headers or None}
        svc.save(record)
    return rules


E2B_REF = re.compile(r"\$\{e2b\.secrets\.([^{}]*)\}")
# Where a record keeps the workload-identity tokens a door registered (E2B's ``iam``): their names
# and definitions (audience, type), never a token; the relay mints one per request.
IAM_KEY = "identity_tokens"


def header_items(vault: SecretVault, owner: str | None, headers: dict[str, dict[str, str]],
                 tokens: dict | None = None) -> list[dict]:
    """The relay's items for per-host headers (E2B's transforms): refused (400) where a header
    names a secret not bound to that host, 404 for a missing one."""
    items = []
    for host, fields in headers.items():
        host = host.rstrip(".").lower()
        for field, template in fields.items():
            for ref in E2B_REF.findall(template):
                item = vault.get(owner, ref)
                if item["hosts"] and not bound_to(item["hosts"], host.removeprefix("*.")):
                    raise BadRequest(f"egress_headers: {host}: {field}: secret {ref!r} is not bound to {host} "
                                     f"(its hosts: {', '.join(item['hosts'])})")
        entry = {"host": host, "headers": dict(fields), "namespace": owner}
        if tokens:
            entry["tokens"] = dict(tokens)
        items.append(entry)
    return items


def spec_secrets(vault: SecretVault, owner: str | None, req, tokens: dict | None = None,
                 ) -> tuple[list[dict], dict[str, str]]:
    """What a start's ``secrets`` and ``egress_headers`` give the worker's relay (names,
    placeholders, hosts; never a value) and the variables the sandbox gets: the placeholders and
    the variables that point its TLS clients at a bundle with the relay's CA. Refused (before
    anything starts) without an egress policy, for a missing secret (404, as another namespace's
    is) and for a secret used for a host it is not bound to (400). ``tokens``: the record's
    workload-identity tokens (``IAM_KEY``) the headers may name."""
    wanted, headers = req.secrets or {}, req.egress_headers or {}
    if not wanted and not headers:
        return [], {}
    if req.egress is None:
        raise BadRequest("secrets and egress_headers are sent by the egress relay: give an egress policy "
                         "(egress) that allows their hosts")
    brokered, env = vault.brokered(owner, wanted)
    brokered.extend(header_items(vault, owner, headers, tokens))
    return brokered, {**TRUST_ENV, **env}
