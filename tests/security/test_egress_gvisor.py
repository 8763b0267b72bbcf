"""An egress policy on gVisor: the sandbox runs in a network namespace made before runsc boots,
and reaches what its policy names through the worker's gate, as on docker and bwrap.

One gVisor sandbox (runsc boots are slow and have been flaky under load) against the small
internet of ``egress_internet``: the allowed name by name (the control), a denied name (no DNS
answer, even from "another" resolver) and its IP literal, the host's end of the link and its
loopback on the admin's port; then its policy changed while it runs, which opens the denied
name and closes the first one; a full snapshot refused (runsc cannot checkpoint the host sockets
such a sandbox uses); a filesystem fork whose child runs in a namespace of its own under the
policy in force; an admin restart, after which the new admin's gate links it again. Then a
sandbox without a policy, which cannot be given one (409). No namespace is left once they are
stopped.
"""

from __future__ import annotations

import asyncio

import pytest

from rock.errors import BadRequest, RockError
from rock.runtime.egress import links
from rock.sdk.sandbox import Sandbox, SandboxConfig
from tests.admin.harness import Admin
from tests.security.egress_internet import Internet
from tests.security.test_egress import E2B_TOKENS, NAMES, PROBE

pytestmark = pytest.mark.gvisor


@pytest.fixture(scope="module")
def internet():
    net = Internet("h47", NAMES).start()
    yield net
    net.stop()


def _admin(internet: Internet, state_dir=None) -> Admin:
    return Admin("gvisor", state_dir=state_dir, egress_hosts=internet.addresses, tokens=E2B_TOKENS).start()


async def _probe(sandbox: Sandbox, *args: str) -> str:
    return (await sandbox.arun("python3 /tmp/probe.py " + " ".join(args))).output.strip()


def _our_netns(admin: Admin) -> set[str]:
    runtime = admin.ctx.worker.runtime
    return set(links.named_netns(runtime._netns_name("")))


def test_gvisor_sandbox_reaches_only_what_its_policy_allows(internet):
    a = internet.addresses
    first = _admin(internet)
    second = None
    sandbox = Sandbox(SandboxConfig(base_url=first.url, token="e2b-token-a", memory="512m", cpus=1,
                                    egress={"allow": ["allowed.test"], "ports": [80]}))

    async def before() -> None:
        await sandbox.start()
        made = _our_netns(first)
        assert len(made) == 1, made  # the namespace runsc was started in
        await sandbox.write_bytes("/tmp/probe.py", PROBE.encode())
        # control: the allowed name, by its name, on its port
        assert await _probe(sandbox, "http", "allowed.test", "80", "allowed.test") == f"hit {a['allowed.test']} allowed.test"
        assert await _probe(sandbox, "resolve", "allowed.test") == a["allowed.test"]
        # a denied name has no answer, from our resolver or "another" one (ours answers it anyway)
        assert (await _probe(sandbox, "resolve", "denied.test")).startswith("unreachable")
        assert await _probe(sandbox, "dns-udp", "192.0.2.53", "allowed.test") == "rcode 0 answers 1"  # control
        assert await _probe(sandbox, "dns-udp", "192.0.2.53", "denied.test") == "rcode 3 answers 0"
        # the denied host's address as a literal, and a raw IP the policy names nowhere
        for target in (a["denied.test"], a["other.test"]):
            out = await _probe(sandbox, "http", target, "80", target)
            assert out.startswith("unreachable"), (target, out)
        # the admin's port on the sandbox's loopback (its own namespace's) and on the gate's side of the link
        port = str(first.port)
        gateway = (await sandbox.arun("cat /etc/resolv.conf | awk '/nameserver/{print $2}'")).output.strip()
        assert gateway.startswith("10.231."), gateway  # our resolver's address is the host's end of the link
        for target in ("127.0.0.1", gateway):
            out = await _probe(sandbox, "http", target, port, "allowed.test")
            assert "hit" not in out and "{" not in out, (target, out)

        # changed while it runs: the denied name now, and no more the first one
        await sandbox.update_egress({"allow": ["denied.test"], "ports": [80]})
        assert await _probe(sandbox, "http", "denied.test", "80", "denied.test") == f"hit {a['denied.test']} denied.test"
        assert (await _probe(sandbox, "http", "allowed.test", "80", "allowed.test")).startswith("unreachable")
        assert (await _probe(sandbox, "http", a["allowed.test"], "80", a["allowed.test"])).startswith("unreachable")

        # a full snapshot is refused (runsc cannot checkpoint the host's sockets it runs on), and
        # the sandbox goes on as it was
        with pytest.raises(BadRequest, match="filesystem snapshot") as refused:
            await sandbox.snapshot(mode="full")
        assert refused.value.status_code == 400
        # a fork: the child starts in a namespace of its own, under the policy in force
        children = await sandbox.fork(1)
        try:
            assert len(_our_netns(first)) == 2
            await children[0].write_bytes("/tmp/probe.py", PROBE.encode())
            for box in (sandbox, children[0]):
                assert await _probe(box, "http", "denied.test", "80", "denied.test") == f"hit {a['denied.test']} denied.test"
                assert (await _probe(box, "http", "allowed.test", "80", "allowed.test")).startswith("unreachable")
        finally:
            await children[0].stop()
        assert len(_our_netns(first)) == 1  # the child's went with it
        await sandbox.aclose()

    async def after(admin: Admin) -> None:
        again = Sandbox(SandboxConfig(base_url=admin.url, token="e2b-token-a"))
        await again.attach(sandbox.sandbox_id)
        # the new admin's gate links it again, under the policy in force (the record's)
        assert await _probe(again, "http", "denied.test", "80", "denied.test") == f"hit {a['denied.test']} denied.test"
        assert (await _probe(again, "http", "allowed.test", "80", "allowed.test")).startswith("unreachable")
        await again.stop()
        # a gVisor sandbox started without a policy has no namespace of ours to gate: it cannot get
        # one later (a clear 409), and it reaches nothing
        plain = Sandbox(SandboxConfig(base_url=admin.url, token="e2b-token-a", memory="512m", cpus=1))
        await plain.start()
        try:
            with pytest.raises(RockError, match="started without an egress policy") as refused:
                await plain.update_egress({"allow": ["allowed.test"]})
            assert refused.value.status_code == 409
            await plain.write_bytes("/tmp/probe.py", PROBE.encode())
            assert (await _probe(plain, "http", a["allowed.test"], "80", "allowed.test")).startswith("unreachable")
        finally:
            await plain.stop()

    try:
        asyncio.run(before())
        first.stop()  # the sandbox runs on in its namespace; the worker's link and table go with the admin
        second = _admin(internet, first.state_dir)
        asyncio.run(after(second))
        assert not _our_netns(second)
    finally:
        if second is None and first.server is None:  # stopped, and the new one never came up: one to clean up
            second = _admin(internet, first.state_dir)
        (second or first).stop(stop_sandboxes=True)
