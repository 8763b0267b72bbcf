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


async def update(svc, sandbox_id: str, owner: str | None, policy: EgressSpec | dict) -> EgressRules:
    """Give a running sandbox the caller owns a new policy; on any refusal the old one stays."""
    rules = checked(policy)
    record = await svc.lookup(sandbox_id, owner)
    async with svc.lock(sandbox_id):
        if record.state != "running":
            raise Conflict(f"sandbox {sandbox_id} is {record.state}; only a running sandbox's egress can change")
        if record.spec.get("network"):
            raise Conflict(f"sandbox {sandbox_id} was started with network=true (no gate); start one with an "
                           "egress policy instead")
        change = getattr(svc.worker, "update_egress", None)
        if change is None:
            raise BadRequest("changing egress on a running sandbox is not available on this deployment")
        await change(sandbox_id, rules.model_dump())
        record.spec = {**record.spec, "egress": rules.model_dump()}
        svc.save(record)
    return rules


E2B_REF = re.compile(r"\$\{e2b\.secrets\.([^{}]*)\}")


def spec_secrets(vault: SecretVault, owner: str | None, req) -> tuple[list[dict], dict[str, str]]:
    """What a start's ``secrets`` and ``egress_headers`` give the worker's relay (names,
    placeholders, hosts; never a value) and the variables the sandbox gets: the placeholders and
    the variables that point its TLS clients at a bundle with the relay's CA. Refused (before
    anything starts) without an egress policy, for a missing secret (404, as another namespace's
    is) and for a secret used for a host it is not bound to (400)."""
    wanted, headers = req.secrets or {}, req.egress_headers or {}
    if not wanted and not headers:
        return [], {}
    if req.egress is None:
        raise BadRequest("secrets and egress_headers are sent by the egress relay: give an egress policy "
                         "(egress) that allows their hosts")
    brokered, env = vault.brokered(owner, wanted)
    for host, fields in headers.items():
        host = host.rstrip(".").lower()
        for field, template in fields.items():
            for ref in E2B_REF.findall(template):
                item = vault.get(owner, ref)
                if item["hosts"] and not bound_to(item["hosts"], host.removeprefix("*.")):
                    raise BadRequest(f"egress_headers: {host}: {field}: secret {ref!r} is not bound to {host} "
                                     f"(its hosts: {', '.join(item['hosts'])})")
        brokered.append({"host": host, "headers": dict(fields), "namespace": owner})
    return brokered, {**TRUST_ENV, **env}
