"""The shape every answer to a harness's call must have: a chat completion, checked and completed
with what clients need but a policy may omit (ids, roles, finish reasons).

Below the modules that answer calls (the hub, the upstream proxy, the native wire formats),
which all use it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rock.chat.endpoint import Call


def normalize(response: dict | None, call: "Call") -> dict:
    """Check a trainer's answer is a chat completion and fill what clients need but a policy may omit."""
    if not isinstance(response, dict):
        raise ValueError("expected a JSON object")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("'choices' must be a non-empty list")
    for n, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise ValueError(f"choices[{n}] needs a 'message' object")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise ValueError(f"choices[{n}].message.content must be a string, a list of parts or null")
        for k, tc in enumerate(message.get("tool_calls") or []):
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"choices[{n}].message.tool_calls[{k}] needs function.name")
            if not isinstance(fn.get("arguments", ""), str):
                raise ValueError(f"choices[{n}].message.tool_calls[{k}].function.arguments must be a JSON "
                                 "string, as OpenAI sends it")
    out = dict(response)
    out.setdefault("id", f"chatcmpl-rock-{call.endpoint.sandbox_id}-{call.index}")
    out.setdefault("object", "chat.completion")
    out.setdefault("created", int(time.time()))
    out.setdefault("model", call.request.get("model") or "rock-policy")
    fixed = []
    for n, choice in enumerate(choices):
        c = dict(choice)
        c.setdefault("index", n)
        c.setdefault("finish_reason", "tool_calls" if (c["message"].get("tool_calls")) else "stop")
        msg = dict(c["message"])
        msg.setdefault("role", "assistant")
        for k, tc in enumerate(msg.get("tool_calls") or []):
            tc.setdefault("id", f"call_{call.index}_{k}")
            tc.setdefault("type", "function")
            tc["function"].setdefault("arguments", "")
        c["message"] = msg
        fixed.append(c)
    out["choices"] = fixed
    return out
