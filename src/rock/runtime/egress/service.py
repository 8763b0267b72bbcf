"""The worker's egress: its gate, its nftables table, and which sandbox has which link."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from rock.actions.egress import EgressRules
from rock.errors import SandboxStartError
from rock.runtime.egress import broker, links
from rock.runtime.egress.gate import Entry, Gate
from rock.runtime.egress.rules import Compiled

log = logging.getLogger("rock.runtime.egress")


def peer_pid(client) -> int:
    """The host pid of the process serving an agent connection (inside the sandbox's namespaces)."""
    sock = client.transport.get_extra_info("socket")
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]


class Egress:
    def __init__(self, owner_key: str, static_hosts: dict[str, str] | None, deny_always: list[str]):
        self.owner_key = owner_key
        self.gate = Gate(static_hosts)
        self.deny_always = list(deny_always)
        self.table = links.table_name(owner_key)
        self._links: dict[str, tuple[str, str]] = {}  # sandbox id -> (link name, sandbox's address)
        self._ready = asyncio.Lock()
        self._installed = False

    def compile(self, rules: dict | EgressRules) -> Compiled:
        rules = rules if isinstance(rules, EgressRules) else EgressRules.model_validate(rules)
        return Compiled(rules, self.deny_always)

    async def _ensure(self) -> None:
        async with self._ready:
            if not self._installed:
                await self.gate.start()
                await asyncio.to_thread(links.install_table, self.table, self.gate.tcp_port, self.gate.dns_port)
                self._installed = True

    async def attach(self, sandbox_id: str, client, rules: dict, brokered: list[dict] | None = None,
                     netns: str | None = None) -> None:
        """Give a running sandbox (no network of its own yet but loopback) its gated way out
        (and, with ``brokered`` secrets, the relay's CA in its trust). ``netns``: the named
        network namespace the sandbox runs in, where its runtime made one (gVisor); else the
        namespace of the process serving its agent."""
        policy = self.compile(rules)
        await self._ensure()
        pid = None
        if netns is None:
            try:
                pid = peer_pid(client)
            except (OSError, AttributeError) as exc:
                raise SandboxStartError(f"egress: cannot find the sandbox's process: {exc}") from None
        link = links.link_name(self.owner_key, sandbox_id)
        host, inside = await asyncio.to_thread(links.attach, self.table, link, pid, netns)
        self._links[sandbox_id] = (link, inside)
        entry = Entry(sandbox_id, policy)
        entry.brokered = list(brokered or [])
        self.gate.entries[inside] = entry
        if entry.brokered:
            await self._trust(client)
        # Every port-53 packet comes to our resolver whatever address it is sent to; this one is
        # merely routable (an image's 127.0.0.53 would stay on the sandbox's loopback).
        await client.exec(["sh", "-c", 'rm -f /etc/resolv.conf; echo "nameserver $1" > /etc/resolv.conf', "sh", host],
                          timeout=10)

    async def _trust(self, client) -> None:
        """The relay's CA in the sandbox's trust (its bundle), where the worker brokers at all."""
        if self.gate.broker is None:
            return
        ca = await asyncio.to_thread(self.gate.broker.ca.certificate_pem)
        done = await client.exec(broker.trust_script(ca), timeout=20)
        if getattr(done, "exit_code", 0):
            raise SandboxStartError(f"egress: the relay's CA could not be put in the sandbox's trust: "
                                    f"{getattr(done, 'stderr', '')}"[:300])

    async def set_headers(self, sandbox_id: str, client, items: list[dict]) -> None:
        """Replace a gated sandbox's per-host headers (E2B's transforms; its secrets stay): the next
        request follows them, on open connections to a bound host too."""
        found = self._links.get(sandbox_id)
        entry = self.gate.entries.get(found[1]) if found is not None else None
        if entry is None:
            return
        had = bool(entry.brokered)
        # in place: a relay serving a connection reads this very list for each request
        entry.brokered[:] = [i for i in entry.brokered if "headers" not in i] + list(items)
        if entry.brokered and not had:
            await self._trust(client)

    def update(self, sandbox_id: str, rules: dict) -> bool:
        """Replace a gated sandbox's policy: new connections and questions follow it at once, and
        open connections it denies are cut."""
        found = self._links.get(sandbox_id)
        if found is None:
            return False
        entry = self.gate.entries.get(found[1])
        if entry is None:
            return False
        cut = entry.change(self.compile(rules))
        if cut:
            log.info("egress: sandbox %s: %d open connection(s) the new policy denies were cut", sandbox_id, cut)
        return True

    def attached(self, sandbox_id: str) -> bool:
        return sandbox_id in self._links

    async def detach(self, sandbox_id: str) -> None:
        found = self._links.pop(sandbox_id, None)
        if found is None:
            return
        self.gate.entries.pop(found[1], None)
        await asyncio.to_thread(links.detach, self.table, found[0])

    async def close(self) -> None:
        for sid in list(self._links):
            await self.detach(sid)
        if self._installed:
            await asyncio.to_thread(links.remove_table, self.table)
            self._installed = False
        await self.gate.close()
