"""The UI's rollout jobs: the jobs table (live while a job runs), a job's page (reward distribution, per-task pass
rates and errors, time per phase, its rollouts filtered by reward, error, harness and task) and a rollout's page
(instruction, model calls, the policy's tokens under the loss mask, diff, tests, harness exit, phase waterfall).
Everything reads the admin's job book (``rock.admin.rollouts``); another namespace's job is a 404 page."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from rock.admin.context import Ctx
from rock.admin.openapi import JobPath
from rock.admin.rollouts import Job, JobNotFound, summary
from rock.admin.ui import access
from rock.admin.ui.pages import HTML, render
from rock.agentic import trajectories

TICK_S = 15.0  # a quiet stream still says it is alive this often
RolloutPath = Path(ge=0, le=10_000_000, description="the rollout's number in its job (arrival order)")
TOKEN_PAGE = 50_000  # the most token ids one request for a sequence's part returns
ROWS = 100  # rollouts listed per page of a job's table (the filters and the sort apply to all of them)
# The training exports (token sequences) kept for the parts a rollout page fetches: the latest ones, up to this
# many token ids in all (the newest is kept whatever its size: its parts come in many requests).
EXPORT_TOKENS = 4_000_000


class JobQuery(BaseModel):
    """A job page's rollout filters; empty fields mean 'any'."""

    model_config = ConfigDict(extra="ignore")
    reward_min: float | None = Field(default=None, ge=0, le=1)
    reward_max: float | None = Field(default=None, ge=0, le=1)
    error: str | None = Field(default=None, pattern="^(yes|no)$")
    harness: str | None = Field(default=None, max_length=64)
    task: str | None = Field(default=None, max_length=256)
    sort: str = Field(default="n", pattern="^-?(n|reward|time|calls)$",
                      description="the rollouts' order: n (arrival), reward, time or calls; a leading '-' reverses it")
    page: int = Field(default=1, ge=1, le=100_000, description=f"which {ROWS} rollouts of those kept are listed")

    @classmethod
    def of(cls, params) -> "JobQuery":
        try:
            return cls.model_validate({k: v for k, v in params.items() if v != ""})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise access.PageError(400, f"bad filter {'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    def keep(self) -> summary.RolloutFilter:
        return summary.RolloutFilter(**self.model_dump(exclude={"sort", "page"}))

    def order(self, rows: list[dict]) -> list[dict]:
        key = self.sort.lstrip("-")
        by = {"n": lambda r: r["n"], "reward": lambda r: (r["reward"], r["n"]), "calls": lambda r: (r["calls"], r["n"]),
              "time": lambda r: ((r["timings"].get("total_ms") or 0), r["n"])}[key]
        return sorted(rows, key=by, reverse=self.sort.startswith("-"))


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    exports: OrderedDict[tuple[str, int], dict] = OrderedDict()  # (job, rollout) -> summary.tokens(): read once

    def job(request: Request, job_id: str) -> Job:
        try:
            return ctx.jobs.get(access.principal(ctx, request), job_id)
        except JobNotFound:
            raise access.PageError(404, f"job {job_id} not found") from None

    async def record(request: Request, job_id: str, n: int) -> dict:
        try:
            return await ctx.jobs.record(access.principal(ctx, request), job_id, n)
        except JobNotFound as exc:
            raise access.PageError(404, exc.message) from None

    async def token_export(request: Request, job_id: str, n: int) -> dict:
        """The rollout's token sequences (the tenant checked by ``record``), computed once for its pages."""
        rec = await record(request, job_id, n)
        key = (job_id, n)
        if key not in exports:
            exports[key] = await asyncio.to_thread(summary.tokens, rec)
        exports.move_to_end(key)
        kept = sum(len(s["token_ids"]) for e in exports.values() for s in e["sequences"])
        while len(exports) > 1 and kept > EXPORT_TOKENS:
            _, old = exports.popitem(last=False)
            kept -= sum(len(s["token_ids"]) for s in old["sequences"])
        return exports[key]

    def job_data(request: Request, j: Job) -> dict:
        q = JobQuery.of(request.query_params)
        keep = q.keep()
        kept = [r for r in j.rollouts if keep.keep(r)]
        pages = max(1, -(-len(kept) // ROWS))
        page = min(q.page, pages)
        rows = q.order(kept)[(page - 1) * ROWS:page * ROWS]

        def at(k: int) -> str:
            return f"{request.url.path.replace('/ui/fragments/', '/ui/')}?{request.url.include_query_params(page=k).query}"

        return {"job": j.view(), "stats": summary.job_stats(j.rollouts), "rows": rows, "query": q,
                "total": len(j.rollouts), "matched": len(kept), "page": page, "pages": pages, "first": (page - 1) * ROWS,
                "prev_url": at(page - 1) if page > 1 else None, "next_url": at(page + 1) if page < pages else None}

    @api.get("/ui/jobs", **HTML)
    async def jobs_page(request: Request):
        """The viewer's rollout jobs, newest first, their progress live."""
        owner = access.principal(ctx, request)
        return render(request, "jobs.html", nav="jobs", jobs=[j.view() for j in ctx.jobs.list(owner)])

    @api.get("/ui/fragments/jobs", **HTML)
    async def jobs_fragment(request: Request):
        owner = access.principal(ctx, request)
        return render(request, "_jobs.html", jobs=[j.view() for j in ctx.jobs.list(owner)])

    @api.get("/ui/jobs/{job_id}", **HTML)
    async def job_page(request: Request, job_id: str = JobPath):
        """A job: progress, reward distribution, per-task pass rate and errors, time per phase, rollouts
        (filtered by reward, error, harness and task)."""
        return render(request, "job.html", nav="jobs", **job_data(request, job(request, job_id)))

    @api.get("/ui/fragments/jobs/{job_id}", **HTML)
    async def job_fragment(request: Request, job_id: str = JobPath):
        return render(request, "_job.html", **job_data(request, job(request, job_id)))

    @api.get("/ui/jobs/{job_id}/rollouts/{n}", **HTML)
    async def rollout_page(request: Request, job_id: str = JobPath, n: int = RolloutPath):
        """One rollout: instruction, model calls and tokens (loaded by the page's script), diff, tests, harness
        exit and the phases' waterfall."""
        j = job(request, job_id)
        rec = await record(request, job_id, n)
        lines, total = summary.diff_lines(rec.get("diff") or "")
        same = [r["n"] for r in j.rollouts if r["task_id"] == j.rollouts[n]["task_id"] and r["n"] != n]
        return render(request, "rollout.html", nav="jobs", job=j.view(), n=n, rec=rec, light=j.rollouts[n],
                      same_task=same[:200], others=[r["n"] for r in j.rollouts if r["n"] != n][:200],
                      instruction=summary.instruction(rec), diff=lines, diff_total=total,
                      waterfall=summary.waterfall(rec.get("timings") or {}))

    @api.get("/ui/jobs/{job_id}/compare", **HTML)
    async def compare_page(request: Request, job_id: str = JobPath, a: int = Query(ge=0, le=10_000_000),
                           b: int = Query(ge=0, le=10_000_000)):
        """Two rollouts side by side (of one task, say): reward, exit, error, each call's answer, diff, tests."""
        j = job(request, job_id)
        sides = []
        for n in (a, b):
            rec = await record(request, job_id, n)
            lines, total = summary.diff_lines(rec.get("diff") or "", summary.DIFF_LINES // 10)
            sides.append({"n": n, "rec": rec, "light": j.rollouts[n], "calls": summary.calls(rec)[:200],
                          "diff": lines, "diff_total": total})
        return render(request, "compare.html", nav="jobs", job=j.view(), sides=sides)

    @api.get("/ui/jobs/{job_id}/rollouts/{n}/data.json", tags=["ui"])
    async def rollout_data(request: Request, job_id: str = JobPath, n: int = RolloutPath):
        """The rollout's model calls in order and its token sequences' heads (calls, why each starts, length), for the
        page; the ids come in parts from ``tokens/{seq}``."""
        job(request, job_id)
        rec = await record(request, job_id, n)
        heads = summary.token_heads(await token_export(request, job_id, n))
        return Response(json.dumps({"calls": summary.calls(rec), "tokens": heads}), media_type="application/json")

    @api.get("/ui/jobs/{job_id}/rollouts/{n}/tokens/{seq}", tags=["ui"])
    async def rollout_tokens(request: Request, job_id: str = JobPath, n: int = RolloutPath,
                             seq: int = Path(ge=0, le=10_000_000, description="the sequence's number in the export"),
                             offset: int = Query(0, ge=0, le=1_000_000_000, description="the first token's position"),
                             limit: int = Query(TOKEN_PAGE, ge=1, le=TOKEN_PAGE, description="how many tokens")):
        """A part of one token sequence of the rollout's training export: token ids, loss mask, logprobs from
        ``offset`` (``length`` is the sequence's)."""
        job(request, job_id)
        part = summary.token_page(await token_export(request, job_id, n), seq, offset, limit)
        if part is None:
            raise access.PageError(404, f"rollout {n} of job {job_id} has no token sequence {seq}")
        return Response(json.dumps(part), media_type="application/json")

    @api.get("/ui/jobs/{job_id}/rollouts/{n}/diff", tags=["ui"], response_class=PlainTextResponse)
    async def rollout_diff(request: Request, job_id: str = JobPath, n: int = RolloutPath):
        """The rollout's whole diff."""
        job(request, job_id)
        rec = await record(request, job_id, n)
        return PlainTextResponse(rec.get("diff") or "", media_type="text/x-diff",
                                 headers={"content-disposition": f'attachment; filename="{job_id}-{n}.diff"'})

    @api.get("/ui/jobs/{job_id}/training.jsonl", tags=["ui"])
    async def training_rows(request: Request, job_id: str = JobPath):
        """The job's training export (``rock job export``'s rows: token ids, loss mask, logprobs) as JSONL."""
        j = job(request, job_id)
        path = ctx.jobs.export_path(j.owner, j.job_id)

        def rows() -> bytes:
            with open(path, encoding="utf-8") as f:
                episodes = trajectories.from_job(json.loads(line) for line in f if line.strip())
                return "".join(json.dumps(r) + "\n" for ep in episodes for r in trajectories.rows(ep)).encode()

        data = await asyncio.to_thread(rows) if path.exists() else b""
        return Response(data, media_type="application/x-ndjson",
                        headers={"content-disposition": f'attachment; filename="{job_id}-training.jsonl"'})

    @api.get("/ui/events/jobs", tags=["ui"], response_class=StreamingResponse, responses={
        200: {"content": {"text/event-stream": {}}, "description": "event `change` when a job changes"}})
    async def job_events(request: Request, job_id: str | None = None):
        """Live updates for the jobs table or one job's page: ``change`` when the viewer's job(s) change."""
        owner = access.principal(ctx, request)
        book = ctx.jobs
        if job_id is not None:
            job(request, job_id)  # 404 for another namespace's job

        def mark():
            js = [book.get(owner, job_id)] if job_id else book.list(owner)
            return tuple((j.job_id, len(j.rollouts), j.ended) for j in js)

        async def stream():
            event = book.waiter()
            try:
                yield "retry: 2000\n\n"
                seen = mark()
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(event.wait(), TICK_S)
                    event.clear()
                    now = mark()
                    if now != seen:
                        seen = now
                        yield f"event: change\ndata: {book.version}\n\n"
                    else:
                        yield ": idle\n\n"
            finally:
                book.forget(event)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    return api
