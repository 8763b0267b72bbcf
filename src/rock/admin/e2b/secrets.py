"""E2B's secrets onto the admin's vault (``rock.admin.secrets``), as e2b's ``Secret`` class calls them.

Control plane (X-API-KEY, a ROCK token; another token's secret is a 404)::

    POST   /secrets             {"name", "value", "metadata"?} -> 201 Secret
    GET    /secrets?limit=&nextToken=                        -> 200 [Secret] (x-next-token: the next page)
    GET    /secrets/{secretID or name}                       -> 200 Secret
    POST   /secrets/{secretID or name} {"value", "metadata"?} -> 200 Secret (the next version)
    DELETE /secrets/{secretID or name}                       -> 204

``Secret`` is ``{"secretID", "name", "currentVersion", "metadata", "createdAt", "updatedAt"}``:
never the value. A secret made here is bound to hosts by the sandboxes that use it: a
``network.rules`` transform header naming ``${e2b.secrets.<name>}`` is sent to that rule's host
only. One made through ROCK's API (bound to hosts) may only be used for those hosts.
"""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from rock.actions.secrets import NAME_PATTERN, SecretCreate
from rock.admin.context import Ctx, iso
from rock.admin.e2b.common import json_object, owner_of, route
from rock.admin.e2b.errors import refusal
from rock.admin.e2b.framing import json_response
from rock.admin.secrets import SecretVault
from rock.errors import E2BError, RockError

_NAME = re.compile(NAME_PATTERN)
_BAD_VALUE = re.compile(r"[\r\n\x00]")
MAX_METADATA = 32


def _wire(item: dict) -> dict:
    return {"secretID": item["id"], "name": item["name"], "currentVersion": item["version"],
            "metadata": dict(item.get("metadata") or {}), "createdAt": iso(item["created_at"]),
            "updatedAt": iso(item["updated_at"])}


def _value(body: dict) -> str:
    value = body.get("value")
    if not isinstance(value, str) or not value or _BAD_VALUE.search(value) or len(value) > 16384:
        raise E2BError(400, "value: a non-empty string of at most 16384 characters without CR, LF or NUL")
    return value


def _metadata(body: dict) -> dict[str, str] | None:
    meta = body.get("metadata")
    if meta is None:
        return None
    if (not isinstance(meta, dict) or len(meta) > MAX_METADATA
            or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 128 and len(v) <= 1024
                       for k, v in meta.items())):
        raise E2BError(400, f"metadata: at most {MAX_METADATA} string entries (keys 128 bytes, values 1024)")
    return dict(meta)


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter()
    vault: SecretVault = ctx.sandboxes.secrets

    @route(api, "/secrets", "POST")
    async def create_secret(request: Request):
        body = await json_object(request, E2BError)
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name.lower()):
            raise E2BError(400, "name: 1-63 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit")
        value, meta = _value(body), _metadata(body)
        owner = owner_of(ctx, request)
        try:
            made = await asyncio.to_thread(vault.create, owner, SecretCreate(name=name.lower(), value=value),
                                           allow_unbound=True)
            if meta:
                await asyncio.to_thread(vault.set_metadata, owner, made["id"], meta)
                made["metadata"] = meta
        except RockError as exc:
            raise refusal(exc) from None
        return json_response(_wire(made), 201)

    @route(api, "/secrets", "GET")
    async def list_secrets(request: Request):
        items = vault.list(owner_of(ctx, request))
        raw_limit, after = request.query_params.get("limit"), request.query_params.get("nextToken")
        if after:
            items = [i for i in items if i["name"] > after]
        headers = {}
        if raw_limit not in (None, ""):
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
                raise E2BError(400, "limit must be an integer from 1 to 1000")
            if len(items) > int(raw_limit):
                items = items[:int(raw_limit)]
                headers["x-next-token"] = items[-1]["name"]
        return json_response([_wire(i) for i in items], headers=headers)

    @route(api, "/secrets/{secret_id}", "GET")
    async def get_secret(request: Request, secret_id: str):
        try:
            return json_response(_wire(vault.get(owner_of(ctx, request), secret_id)))
        except RockError as exc:
            raise refusal(exc) from None

    @route(api, "/secrets/{secret_id}", "POST")
    async def update_secret(request: Request, secret_id: str):
        body = await json_object(request, E2BError)
        value, meta = _value(body), _metadata(body)
        try:
            item = await asyncio.to_thread(vault.update, owner_of(ctx, request), secret_id, value, meta)
        except RockError as exc:
            raise refusal(exc) from None
        return json_response(_wire(item))

    @route(api, "/secrets/{secret_id}", "DELETE")
    async def delete_secret(request: Request, secret_id: str):
        try:
            await asyncio.to_thread(vault.delete, owner_of(ctx, request), secret_id)
        except RockError as exc:
            raise refusal(exc) from None
        return Response(status_code=204)

    return api
