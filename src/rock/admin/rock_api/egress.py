"""ROCK's egress route: a running sandbox's new policy (``rock.admin.sandboxes.egress``)."""

from __future__ import annotations

from fastapi import APIRouter, Path
from starlette.requests import Request

from rock.actions.egress import EgressRules, EgressUpdate
from rock.actions.response import RockResponse
from rock.admin.context import Ctx, ok
from rock.admin.sandboxes import egress

ERRORS = {code: {"model": RockResponse[dict], "description": text} for code, text in (
    (400, "a policy that names the host, the admin or other sandboxes"),
    (404, "no such sandbox (or another namespace's)"),
    (409, "the sandbox is not running, or was started with network=true"),
    (422, "a malformed host pattern, CIDR or port"))}


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter(tags=["egress"])

    @api.post("/sandboxes/{sandbox_id}/egress", response_model=RockResponse[EgressRules], responses=ERRORS,
              summary="Change a running sandbox's egress policy (new connections and DNS answers follow it; "
                      "a refused policy leaves the old one)")
    async def update(body: EgressUpdate, request: Request,
                     sandbox_id: str = Path(min_length=1, max_length=128, description="the sandbox's id")):
        rules = await egress.update(ctx.sandboxes, sandbox_id, ctx.owner(request), body.egress)
        return ok(rules.model_dump(exclude={"proxy": {"password"}}))  # the proxy's password is never echoed

    return api
