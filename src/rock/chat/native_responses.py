"""OpenAI's Responses API (``POST /v1/responses``) onto the chat-completions form and back.

A Responses request's ``input`` (a string or a list of items) and ``instructions`` map onto chat
messages: ``instructions`` and ``system``/``developer`` messages -> ``system``; ``user`` and
``assistant`` messages keep their role (``input_text``/``output_text`` parts joined,
``input_image`` -> an image part); ``function_call`` items -> the assistant's ``tool_calls``
(consecutive ones, with the message before them, are one assistant turn); ``function_call_output``
-> ``tool`` messages; ``reasoning`` summaries -> the next assistant turn's ``reasoning_content``.
``custom`` tools (free-form input, e.g. Codex's ``apply_patch``) become function tools taking
``{"input": string}``, and their calls and outputs map the same way. With ``previous_response_id``
the caller passes the conversation that response ended (``prior``), and the new input extends it.

An answer comes back as a chat completion (converted here to a Response) or a Response itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rock.chat.native_messages import (carry_tokens, chat_tool, chat_tool_call, completion_from, listed_tools,
                                          text_or_list)

_SAME = ("model", "temperature", "top_p", "stream", "parallel_tool_calls")
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text")


def _content(content: Any, where: str) -> str | list:
    if isinstance(text_or_list(content, f"{where}.content", "parts"), str):
        return content
    parts = []
    for n, p in enumerate(content):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise ValueError(f"{where}.content[{n}] must be a part (an object with a 'type')")
        if p["type"] in _TEXT_PARTS:
            text = p.get("text", p.get("refusal"))
            if not isinstance(text, str):
                raise ValueError(f"{where}.content[{n}].text must be a string")
            parts.append({"type": "text", "text": text})
        elif p["type"] == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": p.get("image_url") or ""}})
        elif p["type"] != "input_file":
            raise ValueError(f"{where}.content[{n}] has type {p['type']!r}; parts are input_text, output_text and "
                             "input_image")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def to_chat(req: dict, prior: list[dict] | None = None) -> dict:
    """A Responses request as a chat-completions request (``ValueError`` on a malformed one)."""
    items = req.get("input", [])
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise ValueError("'input' must be a string or a list of items")
    # A previous response's instructions are not carried over (OpenAI's rule): ``prior`` is the
    # conversation without them, and this request's own go first.
    out: list[dict] = list(prior or ())
    if req.get("instructions"):
        out.insert(0, {"role": "system", "content": req["instructions"]})
    turn: dict | None = None  # the assistant turn being built from consecutive items
    reasoning: list[str] = []
    for n, item in enumerate(items):
        where = f"input[{n}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind in ("function_call", "custom_tool_call"):
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise ValueError(f"{where} ({kind}) needs a string 'call_id' and 'name'")
            args = item.get("arguments", "") if kind == "function_call" else json.dumps({"input": item.get("input", "")})
            if not isinstance(args, str):
                raise ValueError(f"{where}.arguments must be a JSON string")
            if turn is None:
                turn = {"role": "assistant", "content": None}
                out.append(turn)
            turn.setdefault("tool_calls", []).append({"id": item["call_id"], "type": "function",
                                                      "function": {"name": item["name"], "arguments": args}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str):
                raise ValueError(f"{where} ({kind}) needs a string 'call_id'")
            output = item.get("output", "")
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": output if isinstance(output, str) else _content(output, where)})
            turn = None
        elif kind == "reasoning":
            reasoning.extend(s.get("text") or "" for s in item.get("summary") or [] if isinstance(s, dict))
        elif kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise ValueError(f"{where}.role must be user, assistant, system or developer")
            content = _content(item.get("content", ""), where)
            if role == "assistant":
                turn = {"role": "assistant", "content": content}
                if reasoning:
                    turn["reasoning_content"], reasoning = "".join(reasoning), []
                out.append(turn)
                continue
            out.append({"role": "system" if role == "developer" else role, "content": content})
            turn = None
        else:
            raise ValueError(f"{where} has type {kind!r}; items are messages, function_call, function_call_output, "
                             "custom_tool_call(_output) and reasoning")
    chat: dict[str, Any] = {k: req[k] for k in _SAME if k in req}
    chat["messages"] = out
    if "max_output_tokens" in req:
        chat["max_tokens"] = req["max_output_tokens"]
    tools = listed_tools(req)
    if tools is not None:
        chat_tools = []
        for n, t in tools:
            if t.get("type") == "function":
                if not isinstance(t.get("name"), str):
                    raise ValueError(f"tools[{n}] (function) needs a string 'name'")
                parameters = t.get("parameters") or {"type": "object", "properties": {}}
                chat_tools.append(chat_tool(t["name"], parameters, t.get("description")))
            elif t.get("type") == "custom" and isinstance(t.get("name"), str):
                chat_tools.append({"type": "function", "function": {
                    "name": t["name"], "description": t.get("description") or "",
                    "parameters": {"type": "object", "properties": {"input": {"type": "string"}},
                                   "required": ["input"]}}})
        chat["tools"] = chat_tools
    choice = req.get("tool_choice")
    if isinstance(choice, str):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("name"):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    return chat


def _custom_names(req: dict) -> set[str]:
    return {t.get("name") for t in req.get("tools") or () if isinstance(t, dict) and t.get("type") == "custom"}


def from_completion(completion: dict, call_id: str, req: dict) -> dict:
    """A chat completion's first choice as a Response to ``req``."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    output: list[dict] = []
    if message.get("reasoning_content"):
        output.append({"type": "reasoning", "id": f"rs_{call_id}", "summary": [
            {"type": "summary_text", "text": message["reasoning_content"]}]})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text:
        output.append({"type": "message", "id": f"msg_{call_id}", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
    custom = _custom_names(req)
    for k, tc in enumerate(message.get("tool_calls") or []):
        fn = tc["function"]
        cid = tc.get("id") or f"call_{call_id}_{k}"
        if fn["name"] in custom:
            try:
                value = json.loads(fn.get("arguments") or "{}").get("input", "")
            except (ValueError, AttributeError):
                value = fn.get("arguments") or ""
            output.append({"type": "custom_tool_call", "id": f"ctc_{call_id}_{k}", "call_id": cid,
                           "name": fn["name"], "input": value, "status": "completed"})
        else:
            output.append({"type": "function_call", "id": f"fc_{call_id}_{k}", "call_id": cid, "name": fn["name"],
                           "arguments": fn.get("arguments") or "", "status": "completed"})
    usage = completion.get("usage") or {}
    incomplete = choice.get("finish_reason") == "length"
    inp, outp = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    out = _envelope(f"resp_{call_id}", req, completion.get("model"))
    out.update(status="incomplete" if incomplete else "completed", output=output,
               incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
               usage={"input_tokens": inp, "output_tokens": outp, "total_tokens": inp + outp,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}})
    carry_tokens(completion, choice, out)
    return out


def _envelope(rid: str, req: dict, model: str | None) -> dict:
    """The fields every Response carries, from its request."""
    return {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": model or req.get("model") or "rock-policy", "output": [], "error": None,
            "incomplete_details": None, "instructions": req.get("instructions"), "metadata": req.get("metadata") or {},
            "parallel_tool_calls": req.get("parallel_tool_calls", True), "temperature": req.get("temperature"),
            "top_p": req.get("top_p"), "tool_choice": req.get("tool_choice", "auto"), "tools": req.get("tools") or [],
            "previous_response_id": req.get("previous_response_id"), "usage": None}


def check(response: dict, call_id: str, req: dict) -> dict:
    """A native Response answer, checked, with what a client needs filled in."""
    output = response.get("output")
    if not isinstance(output, list):
        raise ValueError("a Response's 'output' must be a list of items")
    fixed = []
    for n, item in enumerate(output):
        if not isinstance(item, dict) or item.get("type") not in ("message", "function_call", "reasoning",
                                                                   "custom_tool_call"):
            raise ValueError(f"output[{n}] must be a message, function_call, custom_tool_call or reasoning item")
        item = dict(item)
        if item["type"] in ("function_call", "custom_tool_call"):
            if not isinstance(item.get("name"), str):
                raise ValueError(f"output[{n}] ({item['type']}) needs a string 'name'")
            if item["type"] == "function_call" and not isinstance(item.get("arguments", ""), str):
                raise ValueError(f"output[{n}].arguments must be a JSON string")
            item.setdefault("call_id", f"call_{call_id}_{n}")
            item.setdefault("id", f"fc_{call_id}_{n}")
            item.setdefault("arguments" if item["type"] == "function_call" else "input", "")
        else:
            item.setdefault("id", f"{'msg' if item['type'] == 'message' else 'rs'}_{call_id}_{n}")
        if item["type"] == "message":
            item.setdefault("role", "assistant")
            item.setdefault("content", [])
            item["content"] = [dict(p, annotations=p.get("annotations", [])) if isinstance(p, dict) else p
                               for p in item["content"]]
        if item["type"] == "reasoning":
            item.setdefault("summary", [])
        else:
            item.setdefault("status", "completed")
        fixed.append(item)
    out = _envelope(f"resp_{call_id}", req, response.get("model"))
    out.update(response)
    out["output"] = fixed
    return out


def to_completion(response: dict) -> dict:
    """A Response as a chat completion (what the records hold for every call)."""
    texts, calls, reasoning = [], [], []
    for item in response.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            texts.extend(p.get("text") or p.get("refusal") or "" for p in item.get("content") or []
                         if isinstance(p, dict))
        elif kind == "function_call":
            calls.append(chat_tool_call(item.get("call_id"), item.get("name"), item.get("arguments") or ""))
        elif kind == "custom_tool_call":
            arguments = json.dumps({"input": item.get("input")})
            calls.append(chat_tool_call(item.get("call_id"), item.get("name"), arguments))
        elif kind == "reasoning":
            reasoning.extend(s.get("text") or "" for s in item.get("summary") or [] if isinstance(s, dict))
    finish = "tool_calls" if calls else "length" if response.get("status") == "incomplete" else "stop"
    return completion_from(response, texts, calls, reasoning, finish)


def error_body(status: int, message: str) -> dict:
    """OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class ResponsesFold:
    """Responses SSE events folded into one Response (proxy mode's record of a stream): the final
    lifecycle event carries it whole; items finished before it are kept in case it has none."""

    def __init__(self) -> None:
        self.response: dict | None = None
        self.items: dict[int, dict] = {}

    def event(self, data: dict) -> None:
        kind = data.get("type") or ""
        if kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            self.response = dict(data.get("response") or {})
        elif kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            self.items[data.get("output_index", len(self.items))] = data["item"]

    def result(self) -> dict | None:
        if self.response is not None and not self.response.get("output") and self.items:
            self.response["output"] = [self.items[i] for i in sorted(self.items)]
        return self.response
