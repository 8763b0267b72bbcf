"""E2B's template API (spec/openapi.yml of e2b-dev/E2B, as the e2b SDK's ``Template`` calls it)
onto ROCK's templates (rock.admin.templates: checked image builds, per namespace).

The SDK's build: ``POST /v3/templates`` names the template and gets a build id; for each COPY,
``GET /templates/{id}/files/{hash}`` answers whether those files are here and, if not, a link to
PUT them to (``/templates/{id}/files/{hash}/upload?token=``: the token stands for the caller's
key, so the SDK's upload, which carries no key, is still the caller's); ``POST
/v2/templates/{id}/builds/{build}`` starts the build from its steps; the SDK polls ``GET
/templates/{id}/builds/{build}/status?logsOffset=`` for logs and the outcome. Tags, aliases
(``Template.exists``), the listing and delete are below. A template of another namespace is a 404
like a missing one; ``base`` and the admin's ``e2b.templates`` exist for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timezone

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from rock.admin.context import Ctx
from rock.admin.e2b.common import json_object, owner_of, route
from rock.admin.e2b.errors import refusal
from rock.admin.e2b.framing import json_response
from rock.admin.e2b.snapshots import delete_snapshot
from rock.admin.templates import Build, Template, TemplateNotFound, Templates, served
from rock.admin.templates.steps import HASH
from rock.actions.sizes import parse_memory
from rock.errors import E2BError, RockError

log = logging.getLogger("rock.admin.e2b")
MAX_LOG_PAGE = 100  # E2B's status answers at most 100 log entries per call


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def e2b_errors():
    """ROCK's errors in E2B's shape, with their status (a failed build is not a 5xx here)."""
    try:
        yield
    except RockError as exc:
        raise refusal(exc) from None


def _entry(e: dict) -> dict:
    out = {"timestamp": _iso(e["timestamp"]), "level": e["level"], "message": e["message"]}
    if e.get("step"):
        out["step"] = e["step"]
    return out


def _sizes(ctx: Ctx, build: Build) -> dict:
    """A build's cpuCount and memoryMB: what its sandboxes get (the admin's defaults where it named none)."""
    memory = build.memory_mb or (parse_memory(ctx.settings.default_memory) or 0) >> 20
    return {"cpuCount": build.cpu_count or max(1, round(ctx.settings.default_cpus)), "memoryMB": memory}


def _strings(body: dict, key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise E2BError(400, f"{key} must be a list of strings")
    return value


async def sandbox_started(ctx: Ctx, record, build: Build) -> None:
    """A template's startCmd, started in the new sandbox, and its readyCmd waited for (a bounded
    wait: past it, or when the start command exits non-zero first, the create fails)."""
    if not build.start_cmd and not build.ready_cmd:
        return
    agent = await ctx.sandboxes.agent(record.sandbox_id, record.owner)
    if build.start_cmd:
        await agent.call("proc.start", {"command": build.start_cmd, "name": "e2b-start-cmd"})
    if not build.ready_cmd:
        return
    loop = asyncio.get_running_loop()
    wait = ctx.settings.e2b.ready_wait  # how long a readyCmd may take to pass at create
    deadline = loop.time() + wait
    while True:
        result, _ = await agent.call("exec", {"command": build.ready_cmd, "timeout": 10})
        if result.get("exit_code") == 0:
            return
        if loop.time() > deadline:
            raise E2BError(503, f"the template's readyCmd {build.ready_cmd!r} did not pass in {wait:g} s")
        await asyncio.sleep(0.2)  # a readiness poll, as E2B's own readyCmd is polled


def router(ctx: Ctx, templates: Templates) -> APIRouter:
    api = APIRouter()

    def owner(request: Request) -> str:
        return owner_of(ctx, request) or ""

    def listed(t: Template) -> dict:
        ready = [b for b in t.builds.values() if b.status == "ready"]
        last = max(ready, key=lambda b: b.created_at)
        return {"templateID": t.template_id, "buildID": last.build_id, **_sizes(ctx, last),
                "diskSizeMB": 0, "public": False, "aliases": [t.name], "names": [t.name],
                "createdAt": _iso(t.created_at), "updatedAt": _iso(last.created_at), "createdBy": None,
                "lastSpawnedAt": None, "spawnCount": 0, "buildCount": len(t.builds), "envdVersion": "0.5.7",
                "buildStatus": "ready", "tags": sorted(t.tags)}

    @route(api, "/v3/templates", "POST")
    async def request_build(request: Request):
        who = owner(request)
        body = await json_object(request, E2BError)
        name = body.get("name") or body.get("alias")
        if not isinstance(name, str) or not name:
            raise E2BError(400, "name is required: the template's name, or name:tag")
        if name in served(ctx.settings):
            raise E2BError(409, f"template '{name}' is served by this admin: choose another name")
        with e2b_errors():
            await templates.refresh()
            template, build = await templates.request(who, name, _strings(body, "tags"), body.get("cpuCount"),
                                                body.get("memoryMB"))
        log.info("e2b: template %s (%s) build %s requested", template.name, template.template_id, build.build_id)
        return json_response({"templateID": template.template_id, "buildID": build.build_id, "public": False,
                              "names": [template.name], "aliases": [template.name],
                              "tags": template.pending_tags}, 202)

    @route(api, "/templates/{template_id}/files/{files_hash}", "GET")
    async def upload_link(request: Request, template_id: str, files_hash: str):
        who = owner(request)
        with e2b_errors():
            await templates.refresh()
            template = templates.find(who, template_id, building=True)
        if not HASH.match(files_hash):
            raise E2BError(400, "the files hash must be 64 lower-case hex digits (sha256)")
        if not await templates.has_upload(who, files_hash):
            token = templates.upload_token(who, template.template_id, files_hash)
            url = str(request.base_url).rstrip("/") + (f"/templates/{template.template_id}/files/{files_hash}"
                                                       f"/upload?token={token}")
            return json_response({"present": False, "url": url}, 201)
        return json_response({"present": True}, 201)

    @route(api, "/templates/{template_id}/files/{files_hash}/upload", "PUT")
    async def upload(request: Request, template_id: str, files_hash: str):
        with e2b_errors():
            await templates.refresh()
            who = templates.owner_of_upload(template_id, files_hash, request.query_params.get("token", ""))
            await templates.receive(who, files_hash, request.stream())
        return Response(status_code=200)

    @route(api, "/v2/templates/{template_id}/builds/{build_id}", "POST")
    async def start_build(request: Request, template_id: str, build_id: str):
        who = owner(request)
        body = await json_object(request, E2BError)
        with e2b_errors():
            await templates.refresh()
            template, build = templates.build(who, template_id, build_id)
            await templates.start(template, build, body)
        return Response(status_code=202)

    @route(api, "/templates/{template_id}/builds/{build_id}/status", "GET")
    async def build_status(request: Request, template_id: str, build_id: str):
        who = owner(request)
        q = request.query_params
        try:
            offset, limit = int(q.get("logsOffset") or 0), int(q.get("limit") or MAX_LOG_PAGE)
        except ValueError:
            raise E2BError(400, "logsOffset and limit must be integers") from None
        if offset < 0 or not 0 <= limit <= MAX_LOG_PAGE:
            raise E2BError(400, f"logsOffset must be 0 or more, limit between 0 and {MAX_LOG_PAGE}")
        with e2b_errors():
            await templates.refresh()
            template, build = await templates.status(who, template_id, build_id)
        entries = [e for e in build.logs if not q.get("level") or e["level"] == q["level"]][offset:offset + limit]
        out = {"templateID": template.template_id, "buildID": build.build_id, "status": build.status,
               "logs": [e["message"] for e in entries], "logEntries": [_entry(e) for e in entries]}
        if build.reason:
            out["reason"] = {"message": build.reason["message"], "step": build.reason.get("step"),
                             "logEntries": [_entry(e) for e in build.reason.get("logEntries") or []]}
        return json_response(out)

    @route(api, "/templates/aliases/{alias}", "GET")
    async def alias(request: Request, alias: str):
        who = owner(request)
        if alias in served(ctx.settings):
            return json_response({"templateID": alias, "public": True})
        with e2b_errors():
            await templates.refresh()
            template = templates.find(who, alias)
        return json_response({"templateID": template.template_id, "public": False})

    @route(api, "/templates/{template_id}/tags", "GET")
    async def tags(request: Request, template_id: str):
        who = owner(request)
        if template_id in served(ctx.settings):  # the admin's own: one build, "latest"
            build_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rock-template:{template_id}"))
            return json_response([{"tag": "latest", "buildID": build_id, "createdAt": _iso(ctx.started_at)}])
        with e2b_errors():
            await templates.refresh()
            template = templates.find(who, template_id)
        return json_response([{"tag": tag, "buildID": build_id, "createdAt": _iso(template.builds[build_id].created_at)}
                              for tag, build_id in sorted(template.tags.items())])

    async def tag_request(request: Request, key: str) -> tuple[str, str, list[str]]:
        """(caller, the template ``key`` names, the tags) of a tags body; 400 when either is missing."""
        who = owner(request)
        body = await json_object(request, E2BError)
        ref, wanted = body.get(key), _strings(body, "tags")
        if not isinstance(ref, str) or not ref or not wanted:
            raise E2BError(400, f"{key} and tags are required")
        return who, ref, wanted

    @route(api, "/templates/tags", "POST")
    async def assign(request: Request):
        who, target, wanted = await tag_request(request, "target")
        with e2b_errors():
            await templates.refresh()
            build = await templates.assign(who, target, wanted)
        return json_response({"buildID": build.build_id, "tags": wanted}, 201)

    @route(api, "/templates/tags", "DELETE")
    async def untag(request: Request):
        who, name, wanted = await tag_request(request, "name")
        with e2b_errors():
            await templates.refresh()
            await templates.untag(who, name, wanted)
        return Response(status_code=204)

    @route(api, "/templates", "GET")
    async def listing(request: Request):
        with e2b_errors():
            await templates.refresh()
        return json_response([listed(t) for t in templates.of(owner(request))])

    @route(api, "/templates/{template_id}", "GET")
    async def detail(request: Request, template_id: str):
        who = owner(request)
        if template_id in served(ctx.settings):
            at = _iso(ctx.started_at)
            return json_response({"templateID": template_id, "public": True, "aliases": [template_id],
                                  "names": [template_id], "createdAt": at, "updatedAt": at, "lastSpawnedAt": None,
                                  "spawnCount": 0, "builds": []})
        with e2b_errors():
            await templates.refresh()
            template = templates.find(who, template_id)
        out = listed(template)
        out["builds"] = [{"buildID": b.build_id, "status": b.status, "createdAt": _iso(b.created_at),
                          "updatedAt": _iso(b.created_at), "finishedAt": None, **_sizes(ctx, b),
                          "envdVersion": "0.5.7"} for b in template.builds.values()]
        return json_response(out)

    @route(api, "/templates/{template_id}", "DELETE")
    async def delete(request: Request, template_id: str):
        who = owner(request)
        if template_id in served(ctx.settings):
            raise E2BError(403, f"template '{template_id}' is served by this admin and cannot be deleted")
        with e2b_errors():
            await templates.refresh()
        try:
            template = templates.find(who, template_id, building=True)
        except TemplateNotFound:  # Sandbox.delete_snapshot(id) comes here too
            await delete_snapshot(ctx, template_id, owner_of(ctx, request))
            return Response(status_code=204)
        with e2b_errors():
            await templates.delete(who, template.template_id)
        return Response(status_code=204)

    return api

