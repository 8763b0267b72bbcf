"""The Chat protocol's front door: start a sandbox's model endpoint, answer its calls, read the trajectory.

    POST /apis/v1/chat/start          a model endpoint inside the sandbox (local, proxy or replay)
    POST /apis/v1/chat/stop           end it (the sandbox's waiting calls get a 503)
    POST /apis/v1/chat/watch          SESSION_END when a process inside exits
    POST /apis/v1/chat/exchange       the trainer's fast path: answers in, next calls out
    POST /apis/v1/chat/answer         one answer; a 4xx says why it was refused
    POST /apis/v1/chat/anti_call_llm  ROCK's index protocol on the same calls
    GET  /apis/v1/chat/status         the endpoint: mode, port, calls, ended
    GET  /apis/v1/chat/trajectory     the records (format=rock: ROCK's JSONL)
    WS   /apis/v1/chat/ws             the exchange as a WebSocket: calls pushed, answers as messages
A thin translation onto the admin's ChatHub, which speaks to the sandbox's agent.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from rock.actions.chat import (AnswerError, AntiCallRequest, Answer, EndpointInfo, ExchangeRequest, ExchangeResult,
                               SandboxRef, StartEndpointRequest, WatchRequest)
from rock.actions.response import RockResponse
from rock.actions.sandbox import SandboxId
from rock.chat.hub import ChatHub, Endpoint
from rock.admin.context import Ctx, ok, ok_body, parse, query
from rock.admin.doors import door
from rock.admin.openapi import SANDBOX, doc, long_running
from rock.actions.records import CallRecord, rock_jsonl
from rock.errors import BadRequest, Conflict

PREFIX = "/apis/v1/chat"
TAGS = ["chat"]


def _most(model: type[BaseModel], field: str) -> int:
    """The largest value the model takes for ``field`` (its ``le`` bound)."""
    return int(next(m.le for m in model.model_fields[field].metadata if getattr(m, "le", None) is not None))


# Long polls: the answer comes when a call is pending or the request's own wait ends.
EXCHANGE_WAIT = long_running(_most(ExchangeRequest, "wait") + 30,
                             "a long poll: waits up to the request's wait for a first call")
ANTI_CALL_WAIT = long_running(_most(AntiCallRequest, "call_timeout"),
                              "a long poll: waits up to the request's call_timeout (600 s unless set) for the next call")


class TrajectoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sandbox_id: SandboxId
    format: Literal["json", "rock"] = "json"


def info(ep: Endpoint) -> dict:
    host = "[::1]" if ep.config.host == "::1" else "127.0.0.1"
    return EndpointInfo(sandbox_id=ep.sandbox_id, type=ep.config.type, mode=ep.mode, port=ep.port or 0,
                        base_url=f"http://{host}:{ep.port}/v1", state="serving" if ep.channel else "stopped",
                        calls=len(ep.calls), ended=ep.ended, end_reason=ep.end_reason).model_dump()


def router(ctx: Ctx, hub: ChatHub) -> APIRouter:
    api = APIRouter(prefix=PREFIX, tags=TAGS)

    @api.post("/start", **doc(StartEndpointRequest, result=EndpointInfo, codes=(*SANDBOX,),
                               summary="Serve an OpenAI-compatible endpoint on loopback inside the sandbox"))
    async def start(request: Request):
        req = await parse(request, StartEndpointRequest)
        owner = ctx.owner(request)
        agent = await ctx.sandboxes.agent(req.sandbox_id, owner)
        ep = await hub.start(agent, req.sandbox_id, owner, req)
        return ok(info(ep))

    @api.post("/stop", **doc(SandboxRef, result=EndpointInfo, codes=(404,), summary="Stop the sandbox's model endpoint"))
    async def stop(request: Request):
        req = await parse(request, SandboxRef)
        return ok(info(await hub.stop(req.sandbox_id, ctx.owner(request))))

    @api.post("/watch", **doc(WatchRequest, result=EndpointInfo, codes=(404, 409),
                               summary="End the model session (SESSION_END) when this process inside exits"))
    async def watch(request: Request):
        req = await parse(request, WatchRequest)
        ep = hub.get(req.sandbox_id, ctx.owner(request))
        if ep.channel is None:
            raise Conflict(f"the model endpoint of sandbox {req.sandbox_id} is stopped")
        ep.watch(req.pid)
        return ok(info(ep))

    # The trainer's per-call routes are fast routes (rock.admin.doors): answered at the app's door,
    # ahead of FastAPI's routing and layers, which cost more than the call they carry.
    @door(api, "POST", "/exchange", ExchangeRequest, require_body=True,
          **doc(ExchangeRequest, result=ExchangeResult, summary="Answer calls and take the next pending ones, "
                "in one round trip", openapi_extra=EXCHANGE_WAIT))
    async def exchange(ctx: Ctx, req: ExchangeRequest, principal, call):
        calls, ended, rejected = await hub.exchange(principal, req.answers, req.max_calls, req.wait, req.sandbox_ids)
        return ok_body({"calls": calls, "ended": ended, "rejected": [r.model_dump() for r in rejected]})

    @door(api, "POST", "/answer", Answer, require_body=True,
          **doc(Answer, result=dict, codes=(404, 409),
                summary="Answer one call (a chat completion, or an error for the agent's client)"))
    async def answer(ctx: Ctx, req: Answer, principal, call):
        rejected = hub.answer(principal, req)
        if rejected is not None:
            raise {400: BadRequest, 409: Conflict}.get(rejected.status, _not_found)(rejected.reason)
        return ok_body({"sandbox_id": req.sandbox_id, "index": req.index})

    @door(api, "POST", "/anti_call_llm", AntiCallRequest, require_body=True,
          **doc(AntiCallRequest, result=str, codes=(404, 409, 504),
                summary="ROCK's anti_call_llm: answer call index, get request index+1 (or SESSION_END)",
                openapi_extra=ANTI_CALL_WAIT))
    async def anti_call_llm(ctx: Ctx, req: AntiCallRequest, principal, call):
        return ok_body(await hub.anti_call(principal, req.sandbox_id, req.index, req.response_payload,
                                           req.call_timeout))

    @api.get("/status", **doc(query=SandboxRef, result=EndpointInfo, codes=(404,), summary="The model endpoint"))
    async def status(request: Request):
        req = query(request, SandboxRef)
        return ok(info(hub.get(req.sandbox_id, ctx.owner(request))))

    @api.get("/trajectory", **doc(query=TrajectoryQuery, codes=(404,), responses={200: {
        "model": RockResponse[list[CallRecord]],
        "content": {"application/x-ndjson": {"schema": {"type": "string", "description": "format=rock: ROCK's "
                                                        "trajectory JSONL, one call a line"}}}}},
        summary="Every model call of the sandbox's session, recorded outside it"))
    async def trajectory(request: Request):
        req = query(request, TrajectoryQuery)
        owner = ctx.owner(request)
        ep = hub.endpoints.get(req.sandbox_id)
        if ep is not None and ep.owner == owner:
            records = ep.records
        else:  # an endpoint long ended: its records from the admin's log (every session of the sandbox)
            await ctx.sandboxes.lookup(req.sandbox_id, owner)  # ended sandboxes' records are in the store
            records = await asyncio.to_thread(hub.log.read, req.sandbox_id)
        if req.format == "rock":
            return Response(rock_jsonl(records), media_type="application/x-ndjson")
        return ok([r.model_dump() for r in records])

    from rock.admin.chat import ws

    ws.add_route(api, ctx, hub)
    return api


def _not_found(message: str):
    from rock.errors import SandboxNotFound

    return SandboxNotFound(message)


__all__ = ["router", "AnswerError"]
