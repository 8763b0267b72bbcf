"""Secrets in ROCK's API (ours), onto the admin's vault (``rock.admin.secrets``)::

    POST   /secrets           {"name", "value", "hosts"}  -> SecretInfo (never the value)
    GET    /secrets                                        -> [SecretInfo]
    GET    /secrets/{name}                                 -> SecretInfo
    DELETE /secrets/{name}

A sandbox uses them through ``/start`` (its ``secrets`` field: variable -> secret name).
"""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter, Path
from starlette.requests import Request

from rock.actions.response import RockResponse
from rock.actions.secrets import NAME_PATTERN, SecretCreate, SecretInfo
from rock.admin.context import Ctx, ok
from rock.admin.openapi import errors_noting
from rock.admin.secrets import SecretVault

NamePath = Path(pattern=NAME_PATTERN, description="the secret's name")


_errors = partial(errors_noting, {404: "no such secret (another tenant's is missing the same way)",
                                  400: "a secret bound to no host", 409: "the name is taken"})


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter(tags=["secrets"])
    vault: SecretVault = ctx.sandboxes.secrets

    @api.post("/secrets", response_model=RockResponse[SecretInfo], responses=_errors(400, 409, 422),
              summary="Register a secret bound to hosts: sandboxes started with it hold a placeholder, and the "
                      "egress relay sends the value to those hosts only (the value is never returned)")
    async def create(body: SecretCreate, request: Request):
        made = await asyncio.to_thread(vault.create, ctx.owner(request), body)
        return ok(vault.info(made).model_dump())

    @api.get("/secrets", response_model=RockResponse[list[SecretInfo]], responses=_errors(),
             summary="Your secrets (names, hosts and placeholders; never values)")
    async def list_secrets(request: Request):
        return ok([vault.info(i).model_dump() for i in vault.list(ctx.owner(request))])

    @api.get("/secrets/{name}", response_model=RockResponse[SecretInfo], responses=_errors(404, 422),
             summary="One of your secrets (never its value)")
    async def get(request: Request, name: str = NamePath):
        return ok(vault.info(vault.get(ctx.owner(request), name)).model_dump())

    @api.delete("/secrets/{name}", response_model=RockResponse[str], responses=_errors(404, 422),
                summary="Delete one of your secrets (the relay stops sending it at once)")
    async def delete(request: Request, name: str = NamePath):
        await asyncio.to_thread(vault.delete, ctx.owner(request), name)
        return ok(f"{name} deleted")

    return api
