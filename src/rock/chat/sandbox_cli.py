"""``rock model-service start|stop|anti-call-llm`` run inside a sandbox, done by the admin.

The command (``rock/agent/chat/modelcli.py``) asks the sandbox's agent, which passes the request up as
a notice; this runs the same hub operation the API runs, for the sandbox's owner, and answers
through the agent. What the sandbox may ask is limited to its own endpoint: a proxy upstream it
names must be one the operator listed (``chat.proxy_urls``), and answers it gives to its own
calls (ROCK's anti-call-llm from inside) are recorded as ``answered_via="sandbox_cli"``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from rock.actions.chat import ModelEndpointConfig
from rock.errors import RockError

if TYPE_CHECKING:
    from rock.chat.hub import ChatHub

log = logging.getLogger("rock.admin.chat")


async def handle(hub: "ChatHub", sandbox_id: str, meta: dict, body: bytes) -> None:
    record = hub.sandboxes.records.get(sandbox_id) if hub.sandboxes is not None else None
    if record is None:
        return
    owner, action, args = record.owner, meta.get("action"), meta.get("args") or {}
    reply: dict = {"ticket": meta.get("ticket"), "ok": True, "message": ""}
    out = b""
    try:
        agent = await hub.sandboxes.agent(sandbox_id, owner)
    except RockError as exc:
        log.warning("sandbox %s: model-service %s from inside: %s", sandbox_id, action, exc)
        return
    try:
        if action == "start":
            ep = await hub.start(agent, sandbox_id, owner, ModelEndpointConfig.model_validate(args), True)
            reply["message"] = f"model service started ({ep.mode}) on port {ep.port}"
        elif action == "stop":
            ep = hub.endpoints.get(sandbox_id)
            if ep is None or ep.channel is None:
                reply["message"] = "model service not exist, skip"
            else:
                await hub.stop(sandbox_id, owner)
                reply["message"] = "model service stopped"
        else:
            payload = body.decode() if args.get("has_response") else None
            out = (await hub.anti_call(owner, sandbox_id, int(args.get("index", -1)), payload,
                                       float(args.get("call_timeout") or 600), "sandbox_cli")).encode()
    except ValidationError as exc:
        reply.update(ok=False, type="BadRequest", message="; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()))
    except (RockError, ValueError) as exc:
        reply.update(ok=False, type=type(exc).__name__, message=getattr(exc, "message", None) or str(exc))
    try:
        await agent.call("chat.cli_reply", reply, out)
    except RockError as exc:
        log.debug("sandbox %s: model-service reply not delivered: %s", sandbox_id, exc)
