"""Rollout jobs in the admin under ``/apis/v1/jobs``: a job runner (``rock job run --suite``, ``run_job``) opens a job,
sends each rollout's record as it finishes and closes it with the summary; the UI's job pages read the same book
(``rock.admin.rollouts``). Every job belongs to the caller's namespace; another's is a 404.

    POST /apis/v1/jobs                          {suite, harness, policy, tasks?, model?}   -> {job_id}
    POST /apis/v1/jobs/{job_id}/rollouts        a rollout's record                         -> {n}
    POST /apis/v1/jobs/{job_id}/end             the job's summary                          -> the job
    GET  /apis/v1/jobs                                                                     -> [job]
    GET  /apis/v1/jobs/{job_id}                 the job and its rollouts' summaries
    GET  /apis/v1/jobs/{job_id}/rollouts/{n}    one rollout's whole record
    GET  /apis/v1/jobs/{job_id}/export          the records as JSONL (``rock job run --out``'s format)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import FileResponse

from rock.admin.context import Ctx, ok
from rock.actions.numbers import numbers_only
from rock.admin.front import FrontDoor
from rock.admin.openapi import JobPath, errors
from rock.admin.rollouts import JobBook

BASE = "/apis/v1/jobs"


class JobCreate(BaseModel):
    """A job as its runner starts it."""

    model_config = ConfigDict(extra="forbid")
    suite: str = Field(min_length=1, max_length=512)
    harness: str = Field(min_length=1, max_length=64)
    policy: str = Field(min_length=1, max_length=128)
    tasks: int | None = Field(default=None, ge=0, le=10_000_000, description="rollouts planned")
    model: str | None = Field(default=None, max_length=256)
    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    _numbers = numbers_only("tasks", "concurrency")  # a boolean or a string is not a count (the schema says integer)

FRONT = FrontDoor(roles=("admin",))


def book_of(app: FastAPI) -> JobBook:
    """The admin's job book (made by ``install``)."""
    return app.state.rock.jobs


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the jobs API on an admin, with its book under the state dir."""
    if ctx.settings.role != "admin" or ctx.jobs is None:
        return
    book = ctx.jobs
    api = APIRouter(prefix=BASE, tags=["jobs"])
    missing = errors(404)

    @api.post("", responses=errors(422))
    async def create_job(request: Request, body: JobCreate):
        """Open a job (running until its runner ends it)."""
        return ok({"job_id": book.create(ctx.owner(request), body.model_dump()).job_id})

    @api.post("/{job_id}/rollouts", responses=missing)
    async def add_rollout(request: Request, body: dict[str, Any], job_id: str = JobPath):
        """Add one rollout's record (as ``rock job run --out`` writes it) to the job."""
        return ok({"n": await book.add(ctx.owner(request), job_id, body)})

    @api.post("/{job_id}/end", responses=missing)
    async def end_job(request: Request, body: dict[str, Any], job_id: str = JobPath):
        """End the job with its runner's summary."""
        return ok(book.end(ctx.owner(request), job_id, body).view())

    @api.get("")
    async def list_jobs(request: Request):
        """The caller's jobs, newest first."""
        return ok([j.view() for j in book.list(ctx.owner(request))])

    @api.get("/{job_id}", responses=missing)
    async def get_job(request: Request, job_id: str = JobPath):
        """The job and a summary of each rollout (task, reward, error, timings, sandboxes)."""
        job = book.get(ctx.owner(request), job_id)
        return ok({**job.view(), "rollouts": [{k: v for k, v in r.items() if k not in ("offset", "size")}
                                              for r in job.rollouts]})

    @api.get("/{job_id}/rollouts/{n}", responses=missing)
    async def get_rollout(request: Request, job_id: str = JobPath, n: int = Path(ge=0, le=10_000_000)):
        """One rollout's whole record: model calls, diff, tests, timings."""
        return ok(await book.record(ctx.owner(request), job_id, n))

    @api.get("/{job_id}/export", responses={**missing, 200: {"content": {"application/x-ndjson": {}}}},
             response_class=FileResponse)
    async def export_job(request: Request, job_id: str = JobPath):
        """The job's records as JSONL, for ``rock job export`` or a notebook."""
        path = book.export_path(ctx.owner(request), job_id)
        return FileResponse(path, media_type="application/x-ndjson", filename=f"{job_id}.jsonl")

    app.include_router(api)
