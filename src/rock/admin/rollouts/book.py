"""The admin's book of rollout jobs, per tenant.

    <state_dir>/jobs/<owner>/<job_id>/job.json        settings, then the summary when it ends
                                     /rollouts.jsonl  one record a line, as ``rock job run --out`` writes them

Jobs live in memory as their settings and a light summary per rollout (task, reward, error, timings,
sandboxes, the line's offset); a rollout's full record (model calls, diff, tests) is read from its line
when a page asks for it, never kept. Another tenant's job is missing (``JobNotFound``, a 404), like a
job that does not exist. ``version`` grows with every change and ``changed()`` wakes whoever waits on it
(the UI's live pages).

A record's shape is ``rock.agentic.record.RolloutRecord``'s JSON, but the admin keeps whatever JSON object a
runner sent (another version's, a hand-made one) and shows it as far as it makes sense, so the tables read the
stored JSON defensively rather than through the model."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rock.errors import RockError

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


RECENT_BYTES = 64 * 2**20  # the parsed records kept, by the size of their JSON lines


class JobNotFound(RockError):
    """No such job, rollout or one of another tenant's: a 404 either way."""

    status_code = 404


def _num(value: Any) -> float:
    """A record's number as a float (0.0 for anything else: a runner's record is shown, not judged, here)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def light(n: int, rec: dict, offset: int, size: int) -> dict:
    """What the tables show of rollout ``n`` (its record ``rec``, at ``offset`` in the job's file)."""
    harness = rec.get("harness") if isinstance(rec.get("harness"), dict) else {"name": rec.get("harness")}
    harness = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v)) for k, v in harness.items()}
    calls = rec.get("model_calls") if isinstance(rec.get("model_calls"), list) else []
    return {"n": n, "task_id": str(rec.get("task_id") or ""), "category": rec.get("category"),
            "reward": _num(rec.get("reward")), "passed": rec.get("passed") is True,
            "pass_rate": _num(rec.get("pass_rate")), "error": None if rec.get("error") is None else str(rec["error"]),
            "harness": _str(harness.get("name")), "policy": _str(rec.get("policy") or harness.get("policy")),
            "exit_code": harness.get("exit_code"), "harness_error": harness.get("error"),
            "calls": len(calls), "timings": rec.get("timings") if isinstance(rec.get("timings"), dict) else {},
            "agent_sandbox": _str(rec.get("agent_sandbox")), "verifier_sandbox": _str(rec.get("verifier_sandbox")),
            "offset": offset, "size": size}


@dataclass
class Job:
    """One job: ``meta`` (suite, harness, policy, tasks planned...), its rollouts' light summaries in arrival
    order, ``summary`` once it ended (None while it runs)."""

    job_id: str
    owner: str | None
    folder: Path
    meta: dict
    created: float
    ended: float | None = None
    summary: dict | None = None
    rollouts: list[dict] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.ended is None

    def view(self) -> dict:
        """The job as the API and the tables show it (no rollout records)."""
        done = self.rollouts
        planned = self.meta.get("tasks")
        return {"job_id": self.job_id, "suite": self.meta.get("suite"), "harness": self.meta.get("harness"),
                "policy": self.meta.get("policy"), "tasks": planned, "done": len(done),
                "running": self.running, "created": self.created, "ended": self.ended,
                "mean_reward": round(sum(r["reward"] for r in done) / len(done), 4) if done else None,
                "passed": sum(r["passed"] for r in done), "errors": sum(r["error"] is not None for r in done),
                "meta": self.meta, "summary": self.summary}


class JobBook:
    """Jobs per tenant, kept under ``root`` (read back when the admin starts)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.jobs: dict[str, Job] = {}
        self.by_sandbox: dict[str, tuple[str, int]] = {}
        self.version = 0
        self._lock = threading.Lock()  # file appends run in threads
        self._waiters: set[asyncio.Event] = set()
        self.listeners: list = []  # called with each new rollout's summary and its namespace (the metrics' phase histogram)
        # The last records read, parsed: a rollout's page and its data.json read the same record in turn, and
        # a 200-call record is ~16 MB of JSON (1-2 s to parse). Records never change once written.
        self._recent: OrderedDict[tuple[str, int], tuple[dict[str, Any], int]] = OrderedDict()
        self._recent_bytes = 0
        self._load()

    # -- changes -----------------------------------------------------------------------------

    def _changed(self) -> None:
        self.version += 1
        for event in list(self._waiters):
            event.set()

    def waiter(self) -> asyncio.Event:
        """An event set at every change until ``forget(event)``."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    # -- writes ------------------------------------------------------------------------------

    def _folder(self, owner: str | None, job_id: str) -> Path:
        return self.root / _SAFE.sub("_", owner or "_") / job_id

    def create(self, owner: str | None, meta: dict) -> Job:
        """A new running job of ``owner`` with ``meta`` (suite, harness, policy, tasks planned)."""
        job_id = "job-" + uuid.uuid4().hex[:12]
        job = Job(job_id, owner, self._folder(owner, job_id), dict(meta), time.time())
        job.folder.mkdir(parents=True)
        self._write_meta(job)
        self.jobs[job_id] = job
        self._changed()
        return job

    async def add(self, owner: str | None, job_id: str, rec: dict) -> int:
        """Append a rollout record to the job; its number (0-based, arrival order)."""
        job = self.get(owner, job_id)
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode()
        offset = await asyncio.to_thread(self._append, job.folder / "rollouts.jsonl", line)
        n = len(job.rollouts)
        job.rollouts.append(light(n, rec, offset, len(line)))
        self._index(job, job.rollouts[-1])
        for listener in self.listeners:
            listener(job.rollouts[-1], owner)
        self._changed()
        return n

    def end(self, owner: str | None, job_id: str, summary: dict) -> Job:
        """Mark the job ended with the runner's summary."""
        job = self.get(owner, job_id)
        job.ended, job.summary = time.time(), dict(summary)
        self._write_meta(job)
        self._changed()
        return job

    def _append(self, path: Path, line: bytes) -> int:
        with self._lock, open(path, "ab") as f:
            offset = f.tell()
            f.write(line)
            return offset

    def _write_meta(self, job: Job) -> None:
        data = {"job_id": job.job_id, "owner": job.owner, "meta": job.meta, "created": job.created,
                "ended": job.ended, "summary": job.summary}
        tmp = job.folder / "job.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(job.folder / "job.json")

    def _index(self, job: Job, r: dict) -> None:
        for sid in (r["agent_sandbox"], r["verifier_sandbox"]):
            if sid:
                self.by_sandbox[sid] = (job.job_id, r["n"])

    def _load(self) -> None:
        if not self.root.is_dir():
            return
        for meta_file in self.root.glob("*/*/job.json"):
            try:
                data = json.loads(meta_file.read_text())
                job = Job(data["job_id"], data.get("owner"), meta_file.parent, data.get("meta") or {},
                          data.get("created") or 0.0, data.get("ended"), data.get("summary"))
            except (OSError, ValueError, KeyError):
                continue  # a half-written job folder is skipped, not fatal
            if job.ended is None:
                job.ended = meta_file.stat().st_mtime  # its runner is gone with the old admin
            path = job.folder / "rollouts.jsonl"
            if path.exists():
                offset = 0
                with open(path, "rb") as f:
                    for line in f:
                        try:
                            job.rollouts.append(light(len(job.rollouts), json.loads(line), offset, len(line)))
                            self._index(job, job.rollouts[-1])
                        except ValueError:
                            pass
                        offset += len(line)
            self.jobs[job.job_id] = job

    # -- reads -------------------------------------------------------------------------------

    def get(self, owner: str | None, job_id: str) -> Job:
        """The tenant's job; JobNotFound for a missing one or another tenant's."""
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise JobNotFound(f"job {job_id} not found")
        return job

    def list(self, owner: str | None) -> list[Job]:
        """The tenant's jobs, newest first."""
        return sorted((j for j in self.jobs.values() if j.owner == owner), key=lambda j: j.created, reverse=True)

    async def record(self, owner: str | None, job_id: str, n: int) -> dict:
        """Rollout ``n``'s full record, read from its line."""
        job = self.get(owner, job_id)
        if not 0 <= n < len(job.rollouts):
            raise JobNotFound(f"job {job_id} has no rollout {n}")
        r = job.rollouts[n]
        key = (job_id, n)
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key][0]
        rec = await asyncio.to_thread(self._read, job.folder / "rollouts.jsonl", r["offset"], r["size"])
        if key not in self._recent and r["size"] <= RECENT_BYTES:
            self._recent[key] = (rec, r["size"])
            self._recent_bytes += r["size"]
            while self._recent_bytes > RECENT_BYTES:
                _, (_, size) = self._recent.popitem(last=False)
                self._recent_bytes -= size
        return rec

    @staticmethod
    def _read(path: Path, offset: int, size: int) -> dict[str, Any]:
        with open(path, "rb") as f:
            f.seek(offset)
            return json.loads(f.read(size))

    def rollout_of(self, owner: str | None, sandbox_id: str) -> tuple[str, int] | None:
        """(job, rollout number) whose agent or verifier ran in ``sandbox_id``, of this tenant's jobs."""
        hit = self.by_sandbox.get(sandbox_id)
        if hit is None or self.jobs[hit[0]].owner != owner:
            return None
        return hit

    def export_path(self, owner: str | None, job_id: str) -> Path:
        """The job's records file (what ``rock job run --out`` writes)."""
        return self.get(owner, job_id).folder / "rollouts.jsonl"
