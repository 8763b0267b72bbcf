"""E2B's control plane (spec/openapi.yml of e2b-dev/E2B) onto ROCK's sandbox service.

templateID -> image (``base`` -> the default image; ``Settings.e2b.templates`` adds more),
timeout -> the idle lease (auto_clear_seconds), envVars -> the sandbox's environment,
metadata -> kept with the record and filterable, a templateID that names one of the caller's
snapshots -> a sandbox started from it, autoPause/autoResume -> the service's ``on_timeout: pause``
and ``auto_resume``. Pause, resume, snapshots and fork are in snapshots.py. What ROCK cannot
honour fails closed, saying why.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from rock.actions.egress import EgressRules
from rock.actions.sandbox import EnvVars, SandboxStartRequest, check_env, parse_memory
from rock.admin.context import Ctx
from rock.admin.e2b import network as e2b_network
from rock.admin.e2b import snapshots as snapshot_routes, templates as template_routes
from rock.admin.e2b import volumes as volume_routes
from rock.admin.e2b.common import (CLIENT_ID, ENVD_VERSION, META_KEY, TOKEN_KEY,
                                   control_record, is_e2b, json_object, owner_of, paged, route)
from rock.admin.openapi import body as body_doc, params
from rock.admin.e2b.framing import json_response
from rock.admin.sandboxes.egress import IAM_KEY, update as egress_update
from rock.admin.sandboxes.service import PREWARM_KEY
from rock.admin.sandboxes.start_checks import check_start_request
from rock.admin.store import SandboxRecord
from rock.admin.templates import Templates, served
from rock.admin.e2b.errors import refusal
from rock.errors import E2BError, RockError, SnapshotNotFound

log = logging.getLogger("rock.admin.e2b")
# Fields of NewSandbox we cannot honour unless they say "off", and why.
REFUSED = {
    "mcp": "MCP gateways are not supported",
}


class NewSandbox(BaseModel):
    """E2B's NewSandbox / NewSandboxV2 (fields ROCK cannot honour are refused, see REFUSED)."""

    model_config = ConfigDict(extra="allow")
    templateID: str
    timeout: int | None = None
    metadata: dict[str, str] | None = None
    envVars: EnvVars | None = None
    allow_internet_access: bool | None = None
    autoPause: bool | None = None
    autoPauseMemory: bool | None = None
    autoResume: dict | None = None


class TimeoutBody(BaseModel):
    """``POST /sandboxes/{id}/timeout``: seconds from now."""

    timeout: int


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    timeout: int | None = None


class ListQuery(BaseModel):
    """``GET /v2/sandboxes``' query: filters and paging as E2B's SDK sends them."""

    metadata: str | None = None  # url-encoded k=v&k2=v2, each key and value url-encoded again
    state: str | None = None  # running,paused
    startedAfter: str | None = None  # RFC 3339: sandboxes started at or after it
    startedBefore: str | None = None  # RFC 3339: sandboxes started at or before it
    limit: int | None = None
    nextToken: str | None = None
    order: str | None = None
    template: str | None = None


class E2BErrorBody(BaseModel):
    code: int
    message: str


WHY = {201: "created", 200: "ok", 204: "done", 400: "a field is invalid or cannot be honoured (the message says which)",
       401: "X-API-KEY is missing or not a ROCK token", 404: "no such sandbox or template for this token",
       429: "the team (the key's namespace) is at one of its quotas or past its create rate (named; Retry-After)",
       503: "the sandbox could not start, or this node has no room for it (the limit is named)"}


def _doc(*codes: int, body: type[BaseModel] | None = None, query: type[BaseModel] | None = None) -> dict:
    responses = {c: ({"description": WHY[c]} if c < 300 else {"model": E2BErrorBody, "description": WHY[c]})
                 for c in codes}
    extra: dict = {}
    if body is not None:
        extra["requestBody"] = body_doc(body, required=False)
    if query is not None:
        extra["parameters"] = params(query)
    return {"responses": responses, "openapi_extra": extra or None, "tags": ["e2b"]}


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or time.time(), timezone.utc).isoformat().replace("+00:00", "Z")


def _instant(q, key: str) -> datetime | None:
    """``startedAfter``/``startedBefore``: RFC 3339 (the JavaScript SDK's ``toISOString()``, the
    Python SDK's ``isoformat()``); one without a zone is UTC."""
    raw = q.get(key)
    if not raw:
        return None
    try:  # a '+' of the offset that arrived unencoded reads as a space
        when = datetime.fromisoformat(raw.strip().replace(" ", "+"))
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        when.timestamp()  # out of range with its offset: the same 400
        return when
    except (ValueError, OverflowError):
        raise E2BError(400, f"{key} must be an RFC 3339 timestamp such as 2026-01-02T03:04:05Z, not {raw[:64]!r}") from None


def _templates(ctx: Ctx) -> dict[str, str]:
    return served(ctx.settings)


def _str_map(body: dict, key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise E2BError(400, f"{key} must be an object of string values")
    return value


def _timeout(body: dict, default: int, most: int) -> int:
    value = body.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= most:
        raise E2BError(400, f"timeout must be whole seconds between 1 and {most}")
    return value


async def _body(request: Request) -> dict:
    return await json_object(request, E2BError)


def lifecycle(body: dict) -> dict:
    """NewSandboxV2's autoPause, autoPauseMemory and autoResume as the start request's
    ``on_timeout`` and ``auto_resume``. A timeout's pause keeps the memory on every backend (a
    freeze), so ``autoPauseMemory: false`` (E2B's filesystem-only pause) gets more, never less."""
    pause, memory, resume = body.get("autoPause"), body.get("autoPauseMemory"), body.get("autoResume")
    if pause is not None and not isinstance(pause, bool) or memory is not None and not isinstance(memory, bool):
        raise E2BError(400, "autoPause and autoPauseMemory must be true or false")
    enabled = None
    if resume is not None:
        if not isinstance(resume, dict) or not isinstance(resume.get("enabled"), bool) or set(resume) - {"enabled"}:
            raise E2BError(400, 'autoResume must be {"enabled": true|false}')
        enabled = resume["enabled"]
    if enabled and not pause:
        raise E2BError(400, "autoResume can be enabled only with autoPause (lifecycle on_timeout 'pause'): "
                            "only a sandbox its timeout paused can be resumed by a call")
    return {"on_timeout": "pause" if pause else None, "auto_resume": enabled if pause else None}


def _started(record: SandboxRecord) -> float:
    return record.started_at or record.created_at


def _started_at(record: SandboxRecord) -> datetime:
    """When it started, to the microsecond, as its ``startedAt`` says (a filter given that exact
    time finds it)."""
    return datetime.fromtimestamp(_started(record), timezone.utc)


def lifecycle_of(record: SandboxRecord) -> dict:
    return {"onTimeout": "pause" if record.spec.get("on_timeout") == "pause" else "kill",
            "autoResume": bool(record.spec.get("auto_resume"))}


def sandbox_body(record: SandboxRecord) -> dict:
    meta = record.spec.get(META_KEY) or {}
    return {"templateID": meta.get("template", "base"), "sandboxID": record.sandbox_id, "clientID": CLIENT_ID,
            "envdVersion": ENVD_VERSION, "envdAccessToken": record.spec[TOKEN_KEY], "alias": meta.get("template"),
            "domain": None, "trafficAccessToken": record.spec[TOKEN_KEY]}


def _detail(ctx: Ctx, record: SandboxRecord, listed: bool = False) -> dict:
    meta = record.spec.get(META_KEY) or {}
    memory = parse_memory(record.memory or ctx.settings.default_memory) or 0
    disk = parse_memory(record.spec.get("disk")) or 0
    end = record.last_used_at + (record.auto_clear_seconds or 0)
    out = {"templateID": meta.get("template", "base"), "sandboxID": record.sandbox_id, "clientID": CLIENT_ID,
           "alias": meta.get("template"), "startedAt": _iso(_started(record)),
           "endAt": _iso(end), "envdVersion": ENVD_VERSION, "cpuCount": max(1, round(record.cpus or ctx.settings.default_cpus)),
           "memoryMB": memory >> 20, "diskSizeMB": disk >> 20,
           "state": "paused" if record.state == "paused" else "running", "metadata": meta.get("metadata") or {},
           "volumeMounts": volume_routes.mounted_in(record.spec)}
    if not listed:
        out.update(envdAccessToken=record.spec[TOKEN_KEY], domain=None,
                   allowInternetAccess=e2b_network.internet_of(record.spec), lifecycle=lifecycle_of(record))
        network = e2b_network.config_of(record.spec)
        if network is not None:
            out["network"] = network
    return out


def _no_template(ctx: Ctx, template: str) -> E2BError:
    return E2BError(404, f"template or snapshot '{template}' not found: this ROCK server knows the templates "
                         f"{', '.join(sorted(_templates(ctx)))} (an admin adds more in e2b.templates), the "
                         "templates this API key built and the snapshots it took (GET /snapshots)")


def router(ctx: Ctx, built: Templates) -> APIRouter:
    """The control plane; ``built``: the namespaces' own templates, which ``templateID`` may name too."""
    api = APIRouter()
    svc = ctx.sandboxes
    conf = ctx.settings.e2b

    def timeout_of(body: dict, default: int) -> int:
        return _timeout(body, default, conf.max_timeout)

    pauses = snapshot_routes.Routes(ctx, sandbox_body, timeout_of)  # pause, resume, snapshots, fork
    api.include_router(pauses.router())

    async def create(request: Request, default_timeout: int) -> Response:
        owner = owner_of(ctx, request)
        body = await _body(request)
        template = body.get("templateID")
        if not isinstance(template, str) or not template:
            raise E2BError(400, "templateID is required")
        image = _templates(ctx).get(template)
        snapshot = build = None
        if image is None:
            with template_routes.e2b_errors():
                await built.refresh()
                mine = built.image_of(owner or "", template)
            if mine is not None:
                image, build = mine
        if image is None:  # Sandbox.create(snapshot_id): one of the caller's snapshots
            if not snapshot_routes.STORED_NAME.match(template):
                raise _no_template(ctx, template)
            snapshot, image = template, ctx.settings.default_image
        for key, why in REFUSED.items():
            if body.get(key) not in (None, False, {}, []):
                raise E2BError(400, f"{key} cannot be honoured: {why}")
        lived = lifecycle(body)
        timeout = timeout_of(body, default_timeout)
        metadata, env = _str_map(body, "metadata"), _str_map(body, "envVars")
        try:
            check_env(env)
        except ValueError as exc:
            raise E2BError(400, f"envVars: {exc}") from None
        internet = body.get("allow_internet_access", body.get("allowInternetAccess"))
        egress = e2b_network.rules_of(body.get("network"), internet if isinstance(internet, bool) else None)
        # An E2B sandbox past its timeout is gone (E2B kills it): its kept files go soon after the idle
        # stop; not at once, which would race a kill's own stop-then-delete.
        transforms = e2b_network.transforms_of(body.get("network"))
        iam = e2b_network.iam_of(body)  # tokens a transform names, minted by the relay per request
        sizes = {} if build is None else {"cpus": build.cpu_count,  # the template's cpuCount and memoryMB
                                            "memory": f"{build.memory_mb}m" if build.memory_mb else None}
        try:
            req = SandboxStartRequest(image=image, auto_clear_seconds=timeout, **sizes,
                                      auto_delete_seconds=conf.keep_after_timeout, env=env or None, snapshot=snapshot,
                                      volumes=volume_routes.mounts_of(body), **lived,
                                      egress=None if egress is None or egress == EgressRules() else egress,
                                      egress_headers=transforms)
        except ValueError as exc:  # a transform's header name or value no request could carry
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) if hasattr(exc, "errors") else ""
            raise E2BError(400, f"network.rules: {where}: a header name is an HTTP token, a value has no CR, LF "
                                "or NUL") from None
        try:
            check_start_request(req, ctx.worker, ctx.settings)
            # Its commands are processes of their own (envd's Start), never a session: its agent
            # readies the process table at boot rather than a spare bash nobody would take.
            extra = {TOKEN_KEY: secrets.token_urlsafe(24), META_KEY: {"template": template, "metadata": metadata},
                     IAM_KEY: iam, PREWARM_KEY: "process"}
            began = time.perf_counter()
            record = await svc.start(req, owner, {}, wait=True, extra_spec=extra)
        except SnapshotNotFound:
            raise _no_template(ctx, template) from None
        except RockError as exc:
            raise refusal(exc, fault=503) from None
        if build is not None:
            try:
                await template_routes.sandbox_started(ctx, record, build)
            except BaseException:
                await svc.delete(record.sandbox_id, record.owner)
                raise
        log.info("e2b: sandbox %s created from template %s in %.3fs", record.sandbox_id, template,
                 time.perf_counter() - began)
        return json_response(sandbox_body(record), 201)

    @api.post("/sandboxes", **_doc(201, 400, 401, 404, 429, 503, body=NewSandbox))
    async def create_v1(request: Request):
        return await create(request, 15)

    @api.post("/v2/sandboxes", **_doc(201, 400, 401, 404, 429, 503, body=NewSandbox))
    async def create_v2(request: Request):
        return await create(request, 300)

    async def listing(request: Request, v2: bool) -> Response:
        owner = owner_of(ctx, request)
        q = request.query_params
        # The SDKs url-encode each key and value, then the whole k=v&.. string again as a query
        # parameter: one decoding is the query's, one parse_qsl's, the last this one.
        wanted = {unquote(k): unquote(v) for k, v in parse_qsl(q.get("metadata", ""), keep_blank_values=True)}
        after, before = _instant(q, "startedAfter"), _instant(q, "startedBefore")
        states = set((q.get("state") or "running,paused").split(","))
        if not states <= {"running", "paused"}:
            raise E2BError(400, "state must be running and/or paused")
        shown = {"pending", "running"} if "running" in states else set()
        shown |= {"paused"} if "paused" in states else set()
        items = [r for r in svc.held.live(owner) if is_e2b(r) and r.state in shown
                 and all((r.spec[META_KEY].get("metadata") or {}).get(k) == v
                                                 for k, v in wanted.items())
                 and (not q.get("template") or r.spec[META_KEY].get("template") == q.get("template"))
                 and (after is None or _started_at(r) >= after) and (before is None or _started_at(r) <= before)]
        items.sort(key=lambda r: r.created_at, reverse=q.get("order") != "asc")
        page, headers = paged(request, items)  # limit and nextToken checked for both
        if not v2:  # the old list has no pages: all of them
            page, headers = items, None
        return json_response([_detail(ctx, r, listed=True) for r in page], 200, headers)

    @api.get("/v2/sandboxes", **_doc(200, 400, 401, query=ListQuery))
    async def list_v2(request: Request):
        return await listing(request, True)

    @api.get("/sandboxes", **_doc(200, 400, 401, query=ListQuery))
    async def list_v1(request: Request):
        return await listing(request, False)

    @api.get("/sandboxes/{sandbox_id}", **_doc(200, 401, 404))
    async def get_info(sandbox_id: str, request: Request):
        record = await control_record(ctx, sandbox_id, owner_of(ctx, request))
        return json_response(_detail(ctx, record))

    @api.delete("/sandboxes/{sandbox_id}", **_doc(204, 401, 404))
    async def kill(sandbox_id: str, request: Request):
        record = await control_record(ctx, sandbox_id, owner_of(ctx, request))
        await svc.delete(record.sandbox_id, record.owner)
        log.info("e2b: sandbox %s killed", sandbox_id)
        return Response(status_code=204)

    @api.post("/sandboxes/{sandbox_id}/timeout", **_doc(204, 400, 401, 404, body=TimeoutBody))
    async def set_timeout(sandbox_id: str, request: Request):
        record = await control_record(ctx, sandbox_id, owner_of(ctx, request))
        timeout = timeout_of(await _body(request), 0)
        # E2B's timeout counts from now; our idle lease counts from the last use: make now the last use.
        record.auto_clear_seconds = timeout
        svc.touch(record)
        svc.save(record)
        return Response(status_code=204)

    @api.post("/sandboxes/{sandbox_id}/refreshes", **_doc(204, 401, 404))
    async def refresh(sandbox_id: str, request: Request):
        svc.touch(await control_record(ctx, sandbox_id, owner_of(ctx, request)))
        return Response(status_code=204)

    async def connect(sandbox_id: str, request: Request) -> Response:
        record = await control_record(ctx, sandbox_id, owner_of(ctx, request))
        body = await _body(request)
        if record.state == "paused":  # connect resumes a paused sandbox: 201, as E2B answers
            return await pauses.resumed(record, body)
        if "timeout" in body:
            timeout = timeout_of(body, 0)
            if timeout > (record.auto_clear_seconds or 0):  # connect only ever extends
                record.auto_clear_seconds = timeout
                svc.save(record)
        svc.touch(record)
        return json_response(sandbox_body(record), 200)

    @api.post("/sandboxes/{sandbox_id}/connect", **_doc(200, 400, 401, 404, body=ConnectBody))
    async def connect_v1(sandbox_id: str, request: Request):
        return await connect(sandbox_id, request)

    @api.post("/v2/sandboxes/{sandbox_id}/connect", **_doc(200, 400, 401, 404, body=ConnectBody))
    async def connect_v2(sandbox_id: str, request: Request):
        return await connect(sandbox_id, request)

    @api.get("/sandboxes/{sandbox_id}/metrics", **_doc(200, 401, 404))
    async def metrics(sandbox_id: str, request: Request):
        record = await control_record(ctx, sandbox_id, owner_of(ctx, request))
        try:
            stats = await ctx.worker.stats(record.sandbox_id)
        except RockError:
            return json_response([])
        now = time.time()
        memory_total = stats.memory_limit_bytes or parse_memory(record.memory or ctx.settings.default_memory) or 0
        cpus = max(1, round(record.cpus or ctx.settings.default_cpus))
        elapsed = max(now - (record.started_at or now), 1e-3)
        used_pct = min(100.0, 100.0 * (stats.cpu_seconds or 0.0) / elapsed / cpus)  # mean since start
        return json_response([{"timestamp": _iso(now), "timestampUnix": int(now), "cpuCount": cpus,
                               "cpuUsedPct": round(used_pct, 2), "memUsed": stats.memory_bytes or 0,
                               "memTotal": memory_total, "memCache": 0, "diskUsed": 0, "diskTotal": 0}])

    async def refuse(sandbox_id: str, request: Request, what: str) -> Response:
        await control_record(ctx, sandbox_id, owner_of(ctx, request))
        raise E2BError(501, what)

    @route(api, "/sandboxes/{sandbox_id}/network", "PUT")
    async def network(request: Request, sandbox_id: str):
        owner = owner_of(ctx, request)
        await control_record(ctx, sandbox_id, owner)  # another team's or an unknown id: E2B's 404
        rules, transforms = e2b_network.update_rules(await _body(request))
        try:
            await egress_update(svc, sandbox_id, owner, rules, transforms)
        except RockError as exc:
            raise refusal(exc, fault=503) from None
        return Response(status_code=204)

    return api
