"""The trainer's fast path as a WebSocket: ``/apis/v1/chat/ws``.

client -> server: {"type": "subscribe", "sandbox_ids"?: [...], "max_calls"?: n}   first, once
                  {"type": "answers", "answers": [Answer, ...]}                    any time
server -> client: {"type": "calls", "calls": [PendingCall, ...], "ended": [sandbox_id, ...]}
                  as calls arrive; {"type": "rejected", "rejected": [...]} for answers not applied;
                  {"type": "error", "status_code", "error_type", "message"} before closing.
The same hub operations as ``/exchange``, without an HTTP request per turn: a call is pushed the
moment it arrives and an answer is one message.
"""

from __future__ import annotations

import asyncio
import functools
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rock.actions.chat import Answer
from rock.actions.sandbox import SandboxId
from rock.chat.hub import Call, ChatHub
from rock.admin.context import Ctx
from rock.admin.errors import socket_error
from rock.jsonutil import dumps


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern="^subscribe$")
    sandbox_ids: list[SandboxId] | None = Field(default=None, max_length=10000)
    max_calls: int = Field(default=1024, ge=1, le=10000)


class Answers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern="^answers$")
    answers: list[Answer] = Field(max_length=10000)


def _pending_json(call: Call) -> str:
    """A PendingCall as JSON text, the request spliced in as the client sent it rather than
    serialized again (it can be most of a message: an agent's whole conversation so far). Only
    a body that parsed as exactly one JSON object is spliced (``Call.text``), so nothing a
    sandbox sends can add to the message around it."""
    request = call.text if call.text is not None else dumps(call.request).decode()
    if call.native is not None:  # a Messages or Responses call: its native request beside the chat form
        return '{"sandbox_id":%s,"index":%d,"request":%s,"native":%s}' % (
            _quoted(call.endpoint.sandbox_id), call.index, request, dumps(call.native).decode())
    return '{"sandbox_id":%s,"index":%d,"request":%s}' % (_quoted(call.endpoint.sandbox_id), call.index, request)


_quoted = functools.lru_cache(maxsize=4096)(json.dumps)  # a sandbox id as a JSON string, once per sandbox


def add_route(api: APIRouter, ctx: Ctx, hub: ChatHub) -> None:
    @api.websocket("/ws")
    async def chat_ws(ws: WebSocket):
        await ws.accept()
        lock = asyncio.Lock()

        async def send(obj: dict) -> None:
            async with lock:
                await ws.send_text(json.dumps(obj))

        try:
            owner = ctx.owner(ws)
            sub = Subscribe.model_validate_json(await ws.receive_text())
        except WebSocketDisconnect:
            return
        except Exception as exc:  # noqa: BLE001 - reported to the client, then closed
            await ws.send_json(socket_error(exc))
            await ws.close(code=1008)
            return
        only = set(sub.sandbox_ids) if sub.sandbox_ids is not None else None

        async def push() -> None:
            while True:
                calls, ended = await hub.next_call_objects(owner, sub.max_calls, only, None)
                text = '{"type":"calls","calls":[%s],"ended":%s}' % (",".join(map(_pending_json, calls)),
                                                                     json.dumps(ended) if ended else "[]")
                try:
                    async with lock:
                        await ws.send_text(text)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    # gone: calls taken but not delivered time out in the sandbox like any unanswered call
                    return

        pusher = asyncio.create_task(push())
        try:
            while True:
                raw = await ws.receive_text()
                try:
                    msg = Answers.model_validate_json(raw)
                except ValidationError as exc:
                    await send(socket_error(exc))
                    continue
                rejected = [r.model_dump() for a in msg.answers if (r := hub.answer(owner, a)) is not None]
                if rejected:
                    await send({"type": "rejected", "rejected": rejected})
        except WebSocketDisconnect:
            pass
        finally:
            pusher.cancel()
