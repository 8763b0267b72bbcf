"""What the records do when a cluster node goes away or comes back, and the reaper's sweep over
state that several admins share. Every process updates its own memory at once (so calls fail
fast everywhere); only the reaper-lease holder writes, so the history shows each change once.
"""

from __future__ import annotations

import logging
import time

from rock.admin.store import LIVE

log = logging.getLogger("rock.admin")

ABANDON_GRACE_S = 30.0  # past its startup timeout, a pending record nobody is starting has failed
ORPHAN_AGE_S = 5.0  # a sandbox whose record ended this long ago but still runs is stopped


async def _set(svc, record, to: str, event: str, reason: str | None) -> None:
    if svc.reaping:
        await svc.transition(record, to, event, reason)
    else:
        record.state = to


async def node_lost(svc, name: str, reason: str) -> None:
    hit = 0
    for record in list(svc.records.values()):
        if record.node_id == name and record.state == "running":
            record.failure_reason = f"node {name} was lost: {reason}"
            await _set(svc, record, "lost", "node_lost", record.failure_reason)
            hit += 1
    log.warning("node %s lost (%s): %d sandbox(es) marked lost", name, reason, hit)


async def node_back(svc, name: str, sandbox_ids: list[str]) -> None:
    present = set(sandbox_ids)
    back = 0
    for record in list(svc.records.values()):
        if record.state != "lost" or (record.node_id != name and record.sandbox_id not in present):
            continue
        if record.sandbox_id in present:
            record.failure_reason, record.node_id, record.last_used_at = None, name, time.time()
            await _set(svc, record, "running", "reattached", f"node {name} came back")
            back += 1
        else:
            record.failure_reason = f"node {name} came back without it"
            await _set(svc, record, "failed", "lost", record.failure_reason)
    log.warning("node %s back: %d sandbox(es) re-attached", name, back)
    if svc.reaping:
        await _stop_orphans(svc, name, present)


async def _stop_orphans(svc, name: str, present: set[str]) -> None:
    now = time.time()
    for sid in present:
        record = svc.known(sid) or await svc.store.get(sid)  # an ended record is in the store only
        if record is None:
            continue  # maybe another admin's create, not yet in our records
        ended = record.stopped_at or record.deleted_at or record.updated_at or now
        elsewhere = record.state in LIVE and record.node_id not in (None, name)
        if elsewhere or (record.state not in LIVE and record.state != "lost" and now - ended >= ORPHAN_AGE_S):
            log.warning("stopping sandbox %s on node %s: its record is %s%s", sid, name, record.state,
                        f" on {record.node_id}" if elsewhere else "")
            await svc.quiet_stop(sid, name)


async def sweep(svc) -> None:
    """The lease holder's round over shared state: abandoned starts, missed node losses, orphans."""
    now = time.time()
    tracker = svc.worker.nodes if svc.worker.clustered else None  # a cluster's NodeTracker
    nodes = {node.name: node for node in tracker.all()} if tracker is not None else {}
    for record in list(svc.records.values()):
        if record.state == "pending" and not svc.starting(record.sandbox_id):
            limit = (record.spec.get("startup_timeout") or svc.settings.default_startup_timeout) + ABANDON_GRACE_S
            if now - record.created_at > limit:
                record.failure_reason = "its start was abandoned (the admin that started it went away)"
                await svc.transition(record, "failed", "start_failed", record.failure_reason)
        elif record.state == "running" and record.node_id in nodes and not nodes[record.node_id].live:
            node = nodes[record.node_id]
            record.failure_reason = f"node {node.name} was lost: {node.lost_reason}"
            await svc.transition(record, "lost", "node_lost", record.failure_reason)
    for node in list(nodes.values()):
        if node.live:
            await _stop_orphans(svc, node.name, set(node.info.sandbox_ids))
