"""Env sandboxes that outlived an admin restart, held again by the new admin's env service.

Their envs keep working by handle anyway (routing needs nothing but the handle); what the new
admin lacks is its records of them (``rock.envs.records``), so it cannot list them, reap them
when idle, or fill their free slots. ``recover`` asks each running ``env-`` sandbox's env host
what it hosts (``env.list``) and rebuilds the records from the answer. It acts only through
the service's public methods (``adopt``, ``add_env``, ``start_reaper``) and its ``links``,
as ``rock.envs.forking.EnvForks`` does.
"""

from __future__ import annotations

import logging
import time

from rock.envs.records import EnvRecord
from rock.errors import RockError

log = logging.getLogger("rock.envs")


async def recover(svc) -> int:
    """Rebuild ``svc``'s (the ``EnvService``'s) records of the env sandboxes its sandbox service
    holds as running; how many envs were found. A sandbox whose env host cannot be asked is
    logged and left out (its envs still answer by handle; the sandbox's own auto-clear ends it)."""
    sandboxes = svc.sandboxes
    records = getattr(sandboxes, "records", {})
    default_image = getattr(getattr(sandboxes, "settings", None), "default_image", None)
    found = 0
    for record in list(records.values()):
        if record.state != "running" or not record.sandbox_id.startswith("env-") or record.sandbox_id in svc.by_id:
            continue
        try:
            agent = await sandboxes.agent(record.sandbox_id, record.owner)
            listing, _ = await agent.call("env.list")
        except (RockError, OSError) as exc:
            log.warning("env sandbox %s: cannot list its envs (%s)", record.sandbox_id, exc)
            continue
        image = None if record.image in (None, default_image) else record.image
        sb = svc.adopt(record.sandbox_id, record.owner, image, bool(record.spec.get("network")))
        for env in listing["envs"]:
            if env.get("lost"):
                continue
            handle = f"{sb.sandbox_id}:{env['env']}"
            svc.add_env(EnvRecord(handle=handle, env_id=env["env_id"], owner=record.owner, sandbox=sb))
            found += 1
        if not sb.envs:
            sb.empty_since = time.time()
        for host in listing.get("hosts", ()):
            if host.get("socket"):
                await svc.links.connect(sb.sandbox_id, host["socket"])
    if svc.by_id:
        svc.start_reaper()
    return found
