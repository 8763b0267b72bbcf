"""Credential brokering: what the egress relay adds to a request that carries a secret.

egress_secret_request  one plain HTTP request per new connection from inside one gated sandbox,
                       with ``Authorization: Bearer <placeholder>``, to a server known by two
                       names: ``brokered.test`` (the secret is bound to it: the relay rewrites the
                       head and the server gets the value) and ``plain.test`` (the gate pipes it
                       as it is). p50/p99 of the brokered side and ``added_p50_ms`` /
                       ``added_p99_ms`` over the plain side, both through the same gate.

Measured in alternating blocks so a busy moment of the shared machine falls on both sides.
"""

from __future__ import annotations

import json
import os

from bench.admin import AdminProcess
from bench.egress import PROBE
from bench.report import percentile, record
from rock.runtime import get_runtime_class
from rock.sdk.sandbox import Sandbox, SandboxConfig, Secrets

def unavailable() -> str | None:
    return get_runtime_class("docker").available()


async def run(ctx) -> list[dict]:
    from tests.security.egress_internet import Internet

    blocks, n = (2, 20) if ctx.quick else (4, 50)
    net = Internet("bgs", ("brokered.test", "plain.test")).start()
    os.environ["ROCK_EGRESS_HOSTS"] = json.dumps(net.addresses)
    admin = AdminProcess("docker", prefix="rock-bench-secrets-")
    try:
        admin.start()
        config = SandboxConfig(base_url=admin.url, memory="512m", cpus=1,
                               egress={"allow": ["brokered.test", "plain.test"], "ports": [80]},
                               secrets={"KEY": "bench-key"})
        secrets = Secrets(config)
        await secrets.create("bench-key", "sk-bench-value", hosts=["brokered.test"])
        lat: dict[str, list[float]] = {"brokered": [], "plain": []}
        box = Sandbox(config)
        await box.start()
        try:
            await box.write_bytes("/tmp/probe.py", PROBE.encode())
            for _ in range(blocks):
                for side in ("brokered", "plain"):
                    probe = f"python3 /tmp/probe.py {side}.test {side}.test {n} 0 \"Bearer $KEY\""
                    lat[side] += [float(x) for x in (await box.arun(probe)).output.split()[:-1]]
        finally:
            await box.stop()
            await secrets.aclose()
        b50, p50 = percentile(lat["brokered"], 0.5), percentile(lat["plain"], 0.5)
        b99, p99 = percentile(lat["brokered"], 0.99), percentile(lat["plain"], 0.99)
        return [record("egress_secret_request", "docker", lat["brokered"], plain_p50_ms=round(p50 * 1e3, 3),
                       plain_p99_ms=round(p99 * 1e3, 3), added_p50_ms=round((b50 - p50) * 1e3, 3),
                       added_p99_ms=round((b99 - p99) * 1e3, 3), blocks=blocks)]
    finally:
        admin.stop()
        os.environ.pop("ROCK_EGRESS_HOSTS", None)
        net.stop()
