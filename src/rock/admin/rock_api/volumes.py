"""Volumes in ROCK's API (ours), onto the admin's volumes (``rock.admin.volumes``)::

    POST   /volumes           {"name", "size"?}   -> VolumeInfo
    GET    /volumes                                -> [VolumeInfo]
    GET    /volumes/{name}                         -> VolumeInfo
    DELETE /volumes/{name}                         (409 while a running sandbox mounts it)

A sandbox mounts volumes through ``/start`` (its ``volumes`` field).
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Path
from starlette.requests import Request

from rock.actions.response import RockResponse
from rock.actions.volumes import VOLUME_NAME_PATTERN, VolumeCreateRequest, VolumeInfo
from rock.admin.context import Ctx, ok
from rock.admin.openapi import errors_noting

NamePath = Path(pattern=VOLUME_NAME_PATTERN, description="the volume's name")


_errors = partial(errors_noting, {404: "no such volume (another tenant's looks the same)",
                                  409: "the name is taken, or a running sandbox mounts the volume"})


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter(tags=["volumes"])
    vols = ctx.sandboxes.volumes

    @api.post("/volumes", response_model=RockResponse[VolumeInfo], responses=_errors(400, 409, 422),
              summary="Create a volume of yours: a directory with a size limit that outlives sandboxes and "
                      "mounts into many of yours (read-only or read-write)")
    async def create(body: VolumeCreateRequest, request: Request):
        return ok((await vols.create(ctx.owner(request), body.name, body.size_bytes())).public())

    @api.get("/volumes", response_model=RockResponse[list[VolumeInfo]], responses=_errors(),
             summary="Your volumes")
    async def list_volumes(request: Request):
        return ok([v.public() for v in vols.list(ctx.owner(request))])

    @api.get("/volumes/{name}", response_model=RockResponse[VolumeInfo], responses=_errors(404, 422),
             summary="One of your volumes")
    async def get(request: Request, name: str = NamePath):
        return ok(vols.get(ctx.owner(request), name=name).public())

    @api.delete("/volumes/{name}", response_model=RockResponse[str], responses=_errors(404, 409, 422),
                summary="Delete one of your volumes and its files (409 while a running sandbox mounts it)")
    async def delete(request: Request, name: str = NamePath):
        owner = ctx.owner(request)
        await vols.delete(owner, vols.get(owner, name=name))
        return ok(f"{name} deleted")

    return api
