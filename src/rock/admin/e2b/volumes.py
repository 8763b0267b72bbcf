"""E2B's volumes onto the admin's (``rock.admin.volumes``), as e2b's ``Volume`` class calls them.

Control plane (X-API-KEY, a ROCK token; another token's volume is a 404)::

    POST   /volumes            {"name"}  -> 201 {"volumeID", "name", "token"}
    GET    /volumes                      -> 200 [{"volumeID", "name"}]
    GET    /volumes/{volumeID}           -> 200 {"volumeID", "name", "token"}
    DELETE /volumes/{volumeID}           -> 204 (409 while a running sandbox mounts it)

Content (``Authorization: Bearer <the volume's token>``; the SDK's ``E2B_VOLUME_API_URL`` names
this server), with ``?path=`` inside the volume::

    GET /volumecontent/{id}/path (stat)   DELETE .../path   PATCH .../path {"uid","gid","mode"}
    GET /volumecontent/{id}/dir?depth=    POST .../dir?force=&uid=&gid=&mode=
    GET /volumecontent/{id}/file          PUT .../file (the body is the file's bytes)

``volumeMounts`` ([{"name", "path"}]) at sandbox create mount the caller's volumes read-write.
E2B names no size: a volume made here gets the admin's default (1 GiB).
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rock.actions.volumes import VolumeMount
from rock.admin.context import Ctx
from rock.admin.e2b.common import json_object, owner_of, route
from rock.admin.e2b.errors import refusal
from rock.admin.e2b.framing import json_response
from rock.admin.volumes import Volume
from rock.errors import E2BError, RockError

OPEN_PATHS = ("/volumes", "/volumes/", "/volumecontent/")
MAX_MOUNTS = 16
CHUNK = 1 << 20


def mounts_of(body: dict) -> list[VolumeMount] | None:
    """A NewSandbox's ``volumeMounts``, checked (400 in E2B's shape)."""
    raw = body.get("volumeMounts")
    if raw in (None, []):
        return None
    if not isinstance(raw, list) or len(raw) > MAX_MOUNTS or not all(isinstance(m, dict) for m in raw):
        raise E2BError(400, f"volumeMounts: a list of at most {MAX_MOUNTS} objects {{\"name\", \"path\"}}")
    try:
        return [VolumeMount(name=m.get("name"), path=m.get("path")) for m in raw]
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise E2BError(400, f"volumeMounts: {where} {first.get('msg', exc)}".strip()) from None


def mounted_in(spec: dict) -> list[dict]:
    """A sandbox's ``volumeMounts`` as E2B reports them (its detail and its listing)."""
    return [{"name": m["name"], "path": m["path"]} for m in spec.get("volumes") or []]


def _with_token(v: Volume) -> dict:
    return {"volumeID": v.volume_id, "name": v.name, "token": v.token}


def _int(request: Request, key: str) -> int | None:
    value = request.query_params.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise E2BError(400, f"{key} must be an integer") from None


def _flag(request: Request, key: str) -> bool:
    return request.query_params.get(key, "").lower() in ("1", "true")


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    vols = ctx.sandboxes.volumes

    def owned(request: Request, volume_id: str) -> Volume:
        try:
            return vols.get(owner_of(ctx, request), volume_id=volume_id)
        except RockError as exc:
            raise refusal(exc) from None

    @route(api, "/volumes", "POST")
    async def create_volume(request: Request):
        body = await json_object(request, E2BError)
        name = body.get("name")
        if not isinstance(name, str):
            raise E2BError(400, "name: the volume's name is required")
        try:
            volume = await vols.create(owner_of(ctx, request), name)
        except RockError as exc:
            raise refusal(exc) from None
        return json_response(_with_token(volume), 201)

    @route(api, "/volumes", "GET")
    async def list_volumes(request: Request):
        return json_response([{"volumeID": v.volume_id, "name": v.name} for v in vols.list(owner_of(ctx, request))])

    @route(api, "/volumes/{volume_id}", "GET")
    async def get_volume(request: Request, volume_id: str):
        return json_response(_with_token(owned(request, volume_id)))

    @route(api, "/volumes/{volume_id}", "DELETE")
    async def delete_volume(request: Request, volume_id: str):
        volume = owned(request, volume_id)
        try:
            await vols.delete(volume.owner, volume)
        except RockError as exc:
            raise refusal(exc) from None
        return Response(status_code=204)

    def files(request: Request, volume_id: str):
        """The volume the bearer token opens (the same 404 for a wrong token as for no volume)."""
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth[:7].lower() == "bearer " else ""
        volume = vols.by_id(volume_id)
        if not token:
            raise E2BError(401, "send the volume's token as 'Authorization: Bearer <token>'")
        if volume is None or not hmac.compare_digest(volume.token.encode(), token.encode()):
            raise E2BError(404, f"volume {volume_id} not found")
        return vols.content(volume)

    def path_of(request: Request) -> str:
        path = request.query_params.get("path")
        if not path:
            raise E2BError(400, "path: a path inside the volume is required")
        return path

    async def call(fn, *args, **kwargs):
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except RockError as exc:
            raise refusal(exc) from None

    @route(api, "/volumecontent/{volume_id}/path", "GET")
    async def stat_path(request: Request, volume_id: str):
        return json_response(await call(files(request, volume_id).stat, path_of(request)))

    @route(api, "/volumecontent/{volume_id}/path", "DELETE")
    async def remove_path(request: Request, volume_id: str):
        await call(files(request, volume_id).remove, path_of(request))
        return Response(status_code=204)

    @route(api, "/volumecontent/{volume_id}/path", "PATCH")
    async def update_path(request: Request, volume_id: str):
        content, path = files(request, volume_id), path_of(request)
        body = await json_object(request, E2BError)
        fields = {k: body.get(k) for k in ("uid", "gid", "mode")}
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in fields.values()):
            raise E2BError(400, "uid, gid and mode must be non-negative integers")
        return json_response(await call(content.update, path, **fields))

    @route(api, "/volumecontent/{volume_id}/dir", "GET")
    async def list_dir(request: Request, volume_id: str):
        content = files(request, volume_id)
        return json_response(await call(content.list_dir, path_of(request), _int(request, "depth") or 1))

    @route(api, "/volumecontent/{volume_id}/dir", "POST")
    async def make_dir(request: Request, volume_id: str):
        content = files(request, volume_id)
        entry = await call(content.make_dir, path_of(request), _flag(request, "force"), _int(request, "uid"),
                           _int(request, "gid"), _int(request, "mode"))
        return json_response(entry, 201)

    @route(api, "/volumecontent/{volume_id}/file", "GET")
    async def read_file(request: Request, volume_id: str):
        f = await call(files(request, volume_id).open_file, path_of(request))

        def chunks():
            with f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @route(api, "/volumecontent/{volume_id}/file", "PUT")
    async def write_file(request: Request, volume_id: str):
        content, path = files(request, volume_id), path_of(request)
        data = await request.body()
        entry = await call(content.write_file, path, data, _int(request, "uid"), _int(request, "gid"),
                           _int(request, "mode"))
        return json_response(entry, 201)

    return api


__all__ = ["OPEN_PATHS", "mounted_in", "mounts_of", "router"]
