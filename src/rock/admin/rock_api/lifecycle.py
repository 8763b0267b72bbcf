"""ROCK's lifecycle routes: restart, archive, commit and its status (see rock.admin.sandboxes.lifecycle)."""

from __future__ import annotations

from fastapi import APIRouter, Path
from starlette.requests import Request

from rock.actions.response import CommitStatusResponse, RockResponse, SandboxStartResponse
from rock.actions.sandbox import CommitRequest, RestartRequest
from rock.admin.context import Ctx, ok
from rock.admin.sandboxes.lifecycle import Lifecycle

ERRORS = {code: {"model": RockResponse[dict], "description": text} for code, text in (
    (404, "no such sandbox (or another namespace's)"),
    (409, "the sandbox is in a state that does not allow this"),
    (422, "invalid body"), (429, "the namespace is at one of its quotas or past its create rate (named)"),
    (503, "the sandbox could not be started again, or this node has no room for it (the limit is named)"))}
SandboxPath = Path(min_length=1, max_length=128, description="the sandbox's id")


def router(ctx: Ctx, lifecycle: Lifecycle) -> APIRouter:
    from rock.admin.rock_api.sandbox import start_result

    api = APIRouter(tags=["lifecycle"])

    async def _restart(request: Request, sandbox_id: str):
        return ok(start_result(await lifecycle.restart(sandbox_id, ctx.owner(request))))

    @api.post("/restart", response_model=RockResponse[SandboxStartResponse], responses=ERRORS,
              summary="Start a stopped (or archived) sandbox again, with its files")
    async def restart(body: RestartRequest, request: Request):
        return await _restart(request, body.sandbox_id)

    @api.post("/sandboxes/{sandbox_id}/restart", response_model=RockResponse[SandboxStartResponse], responses=ERRORS,
              summary="Start a stopped (or archived) sandbox again, with its files")
    async def restart_rest(request: Request, sandbox_id: str = SandboxPath):
        return await _restart(request, sandbox_id)

    @api.post("/sandboxes/{sandbox_id}/archive", response_model=RockResponse[str], responses=ERRORS,
              summary="Save a stopped sandbox's files as a local image and free its container (state archiving, "
                      "then archived)")
    async def archive(request: Request, sandbox_id: str = SandboxPath):
        await lifecycle.archive(sandbox_id, ctx.owner(request))
        return ok(f"{sandbox_id} archiving")

    @api.post("/commit", response_model=RockResponse[CommitStatusResponse], responses=ERRORS,
              summary="Save a sandbox's files as an image; runs in the background (phase RUNNING)")
    async def commit(body: CommitRequest, request: Request):
        return ok(await lifecycle.commit(body.sandbox_id, ctx.owner(request), body.image_tag, body.username,
                                         body.password))

    @api.get("/commit/{sandbox_id}", response_model=RockResponse[CommitStatusResponse], responses=ERRORS,
             summary="The status of the sandbox's last commit")
    async def commit_status(request: Request, sandbox_id: str = SandboxPath):
        return ok(await lifecycle.commit_status(sandbox_id, ctx.owner(request)))

    return api
