"""ROCK's lifecycle beyond start/stop: restart, archive, commit, and the timed transitions of a
stopped sandbox (``auto_archive_seconds``, ``auto_delete_seconds``).

A stopped sandbox keeps its files (the worker suspends it); ``restart`` brings it back on them.
``archive`` saves its files as a local image and frees what the backend held; a restart of an
archived sandbox starts from that image. ``commit`` saves a running or stopped sandbox's files
as an image under a caller's tag (pushed when the tag names a registry). Kept outside
``Sandboxes`` (records and the state machine) so each stays small; this class only moves
records along the edges ``Sandboxes`` already knows.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime, timezone

from rock.actions.sandbox import SandboxStartRequest
from rock.admin.sandboxes.service import Sandboxes
from rock.admin.store import SandboxRecord
from rock.errors import Conflict, RockError, SandboxNotFound, SandboxStartError

log = logging.getLogger("rock.admin.sandboxes.lifecycle")

ARCHIVE_REPO = "rock-archive"
DISK_CHECK_EVERY = 60.0  # seconds between measurements of what running sandboxes wrote (their `disk` limit)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def archive_tag(sandbox_id: str) -> str:
    # Image names are lower case; the hash keeps ids that differ only in case apart.
    digest = hashlib.sha256(sandbox_id.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in sandbox_id.lower())[:100]
    return f"{ARCHIVE_REPO}/{safe}-{digest}:latest"


def transition_deadline(record: SandboxRecord, default_delete: int | None) -> tuple[str, float] | None:
    """What happens next to a stopped or archived sandbox, and when (ROCK's rule: archive wins
    over delete; an archived sandbox is deleted after auto_delete_seconds)."""
    spec = record.spec
    archive_s, delete_s = spec.get("auto_archive_seconds"), spec.get("auto_delete_seconds", default_delete)
    if record.state == "stopped" and record.stopped_at is not None:
        if archive_s is not None:
            return "archived", record.stopped_at + archive_s
        if delete_s is not None:
            return "deleted", record.stopped_at + delete_s
    if record.state == "archived" and delete_s is not None and spec.get("archived_at"):
        return "deleted", spec["archived_at"] + delete_s
    return None


class Lifecycle:
    def __init__(self, sandboxes: Sandboxes, default_delete_seconds: int | None):
        self.svc = sandboxes
        self.worker = sandboxes.worker
        self.default_delete_seconds = default_delete_seconds
        self.commits: dict[str, dict] = {}  # sandbox_id -> the last commit's status (this process)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.Task | None = None
        self._disk_checked = time.monotonic()
        sandboxes.events.subscribe(self._on_event)
        # Stored with each record, so the timers find what is due in the store, not in memory.
        sandboxes.deadline = lambda record: (transition_deadline(record, default_delete_seconds) or (None, None))[1]

    def _on_event(self, kind: str, record: SandboxRecord, info: dict) -> None:
        # However a sandbox gets deleted (route, UI, timer, env service), its archive image goes too.
        image = record.spec.get("archive_image")
        if kind == "state" and record.state == "deleted" and image:
            from rock.runtime.docker.images import remove_image

            self._spawn(asyncio.to_thread(remove_image, image), f"unarchive-{record.sandbox_id}")

    # -- restart -----------------------------------------------------------------------------

    async def restart(self, sandbox_id: str, owner: str | None) -> SandboxRecord:
        svc = self.svc
        record = await svc.lookup(sandbox_id, owner)
        async with svc.lock(sandbox_id):
            if record.state in ("running", "pending"):
                return record  # already up: restart is idempotent
            if record.state not in ("stopped", "archived"):
                raise Conflict(f"sandbox {sandbox_id} is {record.state}; only a stopped or archived sandbox "
                               "can be restarted")
            from_state = record.state
            svc.admission.admit(owner, [(sandbox_id, *svc.cost_of(record))])  # given back by the failure's transition
            await svc.transition(record, "pending", "restart")
            began = time.perf_counter()
            try:
                if from_state == "archived":
                    known = {k: v for k, v in record.spec.items() if k in SandboxStartRequest.model_fields}
                    spec = svc.spec_for(record, SandboxStartRequest.model_validate(known))
                    info = await self.worker.create(spec.model_copy(update={"image": record.spec["archive_image"]}))
                else:
                    info = await self.worker.restart(sandbox_id, record.node_id)
            except Exception as exc:  # noqa: BLE001 - the reason goes to the record and the caller
                reason = exc.message if isinstance(exc, RockError) and exc.message else f"{type(exc).__name__}: {exc}"
                kept = not isinstance(exc, SandboxNotFound)
                if not kept:  # stopped before its start finished, or a backend that keeps no files
                    reason = f"its files were not kept ({self.worker.backend_name} backend); start a new sandbox"
                await svc.transition(record, from_state if from_state == "stopped" else "failed", "restart_failed",
                                      reason)
                # Nothing to restart from is the sandbox's state (409), not a failure of the server.
                raise (SandboxStartError if kept else Conflict)(f"sandbox {sandbox_id} could not be restarted: "
                                                                f"{reason}") from None
            record.backend, record.host_name, record.host_ip = info.backend, info.host_name, info.host_ip
            record.node_id = info.node_id or record.node_id
            record.failure_reason = None
            record.started_at = record.last_used_at = time.time()
            await svc.transition(record, "running", "restarted")
        log.info("sandbox %s restarted from %s in %.1f ms", sandbox_id, from_state, (time.perf_counter() - began) * 1e3)
        return record

    # -- archive -----------------------------------------------------------------------------

    async def archive(self, sandbox_id: str, owner: str | None) -> SandboxRecord:
        svc = self.svc
        record = await svc.lookup(sandbox_id, owner)
        async with svc.lock(sandbox_id):
            if record.state in ("archiving", "archived"):
                return record
            if record.state != "stopped":
                raise Conflict(f"sandbox {sandbox_id} is {record.state}; stop it before archiving it")
            await svc.transition(record, "archiving", "archive")
        self._spawn(self._archive(record), f"archive-{sandbox_id}")
        return record

    async def _archive(self, record: SandboxRecord) -> None:
        sid, tag = record.sandbox_id, archive_tag(record.sandbox_id)
        try:
            await self.worker.commit(sid, tag, record.node_id)
            await self.worker.stop(sid, record.node_id)  # the image holds the files now
        except Exception as exc:  # noqa: BLE001
            reason = exc.message if isinstance(exc, RockError) and exc.message else f"{type(exc).__name__}: {exc}"
            log.warning("archiving sandbox %s failed: %s", sid, reason)
            async with self.svc.lock(sid):
                if record.state == "archiving":
                    await self.svc.transition(record, "stopped", "archive_failed", reason)
            return
        async with self.svc.lock(sid):
            if record.state != "archiving":  # deleted meanwhile
                return
            record.spec = {**record.spec, "archive_image": tag, "archived_at": time.time()}
            await self.svc.transition(record, "archived", "archived")
        log.info("sandbox %s archived as %s", sid, tag)

    # -- commit ------------------------------------------------------------------------------

    async def commit_status(self, sandbox_id: str, owner: str | None) -> dict:
        await self.svc.lookup(sandbox_id, owner)
        status = self.commits.get(sandbox_id)
        if status is None:
            raise SandboxNotFound(f"sandbox {sandbox_id} has no commit in progress or finished since the admin started")
        return status

    async def commit(self, sandbox_id: str, owner: str | None, image_tag: str, username: str | None,
                     password: str | None) -> dict:
        from rock.admin.claims import claim_tag
        from rock.runtime.docker.images import split_tag

        record = await self.svc.lookup(sandbox_id, owner, include_deleted=False)
        split_tag(image_tag)  # a bad tag is the caller's error, now, not a failed commit later
        if record.state not in ("running", "stopped"):
            raise Conflict(f"sandbox {sandbox_id} is {record.state}; only a running or stopped sandbox can be committed")
        current = self.commits.get(sandbox_id)
        if current is not None and current["phase"] == "RUNNING":
            raise Conflict(f"sandbox {sandbox_id} is already being committed to {current['image_tag']}")
        await claim_tag(self.svc.store, image_tag, owner)  # held for good: no later commit or build replaces it
        status = self.commits[sandbox_id] = {
            "sandbox_id": sandbox_id, "image_tag": image_tag, "phase": "RUNNING", "started_at": _iso(time.time()),
            "completed_at": None, "exit_code": None, "failed_stage": None, "error_code": None, "error_message": None,
        }
        self._spawn(self._commit(status, username, password), f"commit-{sandbox_id}")
        return dict(status)

    async def _commit(self, status: dict, username: str | None, password: str | None) -> None:
        from rock.runtime.docker.images import has_registry, push

        began, stage = time.perf_counter(), "commit"
        try:
            owner = self.svc.known(status["sandbox_id"]) or await self.svc.store.get(status["sandbox_id"])
            image_id = await self.worker.commit(status["sandbox_id"], status["image_tag"],
                                                owner.node_id if owner is not None else None)
            if has_registry(status["image_tag"]):
                stage = "push"
                await asyncio.to_thread(push, status["image_tag"], username or None, password or None)
            status.update(phase="SUCCEEDED", exit_code=0, image_id=image_id)
            log.info("sandbox %s committed as %s in %.1f s", status["sandbox_id"], status["image_tag"],
                     time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001
            message = exc.message if isinstance(exc, RockError) and exc.message else f"{type(exc).__name__}: {exc}"
            code = {"commit": "COMMIT_FAILED", "push": "PUSH_FAILED"}[stage]
            if isinstance(exc, SandboxNotFound):
                code = "SANDBOX_CONTAINER_NOT_FOUND"
            status.update(phase="FAILED", exit_code=1, failed_stage=stage, error_code=code, error_message=message)
            log.warning("committing sandbox %s failed at %s: %s", status["sandbox_id"], stage, message)
        finally:
            status["completed_at"] = _iso(time.time())

    # -- timed transitions -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="rock-lifecycle")
        for record in list(self.svc.records.values()):
            if record.state == "archiving":  # the admin stopped while it archived: do it again
                self._spawn(self._archive(record), f"archive-{record.sandbox_id}")
        self._spawn(self._date_older_records(), "lifecycle-due-at")

    async def _date_older_records(self) -> None:
        """Stopped records written before records carried ``due_at`` get theirs (once)."""
        rows, _ = await self.svc.store.query(states=("stopped", "archived"))
        for record in rows:
            if record.due_at is None and self.svc.deadline(record) is not None:
                await self.svc.write_record(record, None, None)

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        await asyncio.gather(*([self._loop] if self._loop else []), *self._tasks, return_exceptions=True)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.sleep(await self._next_check())
                await self.transition_due()
                if time.monotonic() - self._disk_checked >= DISK_CHECK_EVERY:
                    self._disk_checked = time.monotonic()
                    await self.check_disk()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive a bad round
                log.exception("lifecycle round failed")

    async def _next_check(self) -> float:
        due = await self.svc.store.next_due()
        return max(0.2, min(5.0, due - time.time() if due is not None else 5.0))

    def _acts(self) -> bool:
        """With a store several admins share, only the reaper-lease holder runs timed transitions."""
        return not self.svc.store.shared or self.svc.reaping

    async def transition_due(self) -> None:
        if not self._acts():
            return
        now = time.time()
        for row in await self.svc.store.due(now):
            try:
                record = await self.svc.lookup(row.sandbox_id, row.owner)
            except SandboxNotFound:
                continue
            due = transition_deadline(record, self.default_delete_seconds)
            if due is None or due[1] > now:
                continue
            target, _ = due
            log.info("sandbox %s: %s is due (stopped at %s)", record.sandbox_id, target, _iso(record.stopped_at))
            if target == "archived":
                await self.archive(record.sandbox_id, record.owner)
            else:
                await self.svc.delete(record.sandbox_id, record.owner)

    async def check_disk(self) -> list[str]:
        """Stop (files kept) every running sandbox that wrote more than its ``disk`` limit."""
        from rock.actions.sandbox import parse_memory

        stopped = []
        if not self._acts():
            return stopped
        for record in list(self.svc.records.values()):
            limit = parse_memory(record.spec.get("disk")) if record.state == "running" else None
            if not limit:
                continue
            try:
                used = await self.worker.disk_usage(record.sandbox_id, record.node_id)
            except RockError:
                continue
            if used is not None and used > limit:
                reason = (f"disk limit exceeded: the sandbox wrote {used / 2**20:.1f} MiB, its disk limit is "
                          f"{record.spec['disk']}; stopped with its files kept")
                log.warning("sandbox %s: %s", record.sandbox_id, reason)
                record.failure_reason = reason
                await self.svc.stop(record.sandbox_id, record.owner, event="disk_limit")
                stopped.append(record.sandbox_id)
        return stopped
