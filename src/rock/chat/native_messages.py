"""Anthropic's Messages API (``POST /v1/messages``) onto the chat-completions form and back.

The trainer sees every call in one form, a chat-completions request; a Messages call arrives as
``{"model", "system", "messages": [...], "tools": [...], "max_tokens", ...}`` with content
blocks, which map one to one onto chat messages:

- ``system`` (a string or text blocks), and a ``system`` turn among the messages -> a ``system`` message;
- a user turn's ``tool_result`` blocks -> ``tool`` messages (``tool_call_id`` = ``tool_use_id``),
  in order, before the turn's text; its ``text``/``image`` blocks -> the user message's content;
- an assistant turn's ``text`` -> ``content``, ``tool_use`` -> ``tool_calls`` (``input`` as a
  JSON string in ``arguments``), ``thinking`` -> ``reasoning_content``;
- ``tools`` (``name``, ``description``, ``input_schema``) -> function tools.

An answer comes back as a chat completion (converted here to a Message) or as a Message itself.
Malformed requests raise ``ValueError`` with the place and the reason (the endpoint answers 400 in
Anthropic's error shape).
"""

from __future__ import annotations

import json
import time
from typing import Any

STOP_FROM_FINISH = {"stop": "end_turn", "tool_calls": "tool_use", "function_call": "tool_use",
                    "length": "max_tokens", "content_filter": "refusal"}
FINISH_FROM_STOP = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "stop_sequence": "stop",
                    "refusal": "content_filter", "pause_turn": "stop"}
# Request fields carried over unchanged (the same meaning in both APIs), and renamed ones.
_SAME = ("model", "max_tokens", "temperature", "top_p", "top_k", "stream")
_RENAMED = {"stop_sequences": "stop"}


def text_or_list(value: Any, where: str, items: str) -> str | list:
    """A content field as it came when it is a string or a list (whose ``items`` the caller
    checks), else the ValueError that says what ``where`` must be. Both native APIs allow both."""
    if isinstance(value, (str, list)):
        return value
    raise ValueError(f"{where} must be a string or a list of {items}")


def chat_tool_call(call_id: Any, name: Any, arguments: str) -> dict:
    """A tool call as a chat completion's message holds it."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def listed_tools(req: dict) -> list[tuple[int, dict]] | None:
    """The request's ``tools`` with their indexes, each checked to be an object (None: it has none)."""
    tools = req.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise ValueError("'tools' must be a list")
    for n, t in enumerate(tools):
        if not isinstance(t, dict):
            raise ValueError(f"tools[{n}] must be an object")
    return list(enumerate(tools))


def chat_tool(name: str, parameters: Any, description: Any = None) -> dict:
    """A function tool as a chat-completions request declares it."""
    fn = {"name": name, "parameters": parameters}
    if description:
        fn["description"] = description
    return {"type": "function", "function": fn}


def _text_of(blocks: Any, where: str) -> str:
    """A string, or text blocks joined: what ``system`` and a tool result's content may be."""
    blocks = text_or_list(blocks, where, "content blocks")
    if isinstance(blocks, str):
        return blocks
    out = []
    for n, b in enumerate(blocks):
        if _kind(b, f"{where}[{n}]") == "text":
            out.append(b["text"])
        elif b["type"] not in ("image", "document", "search_result"):
            raise ValueError(f"{where}[{n}] has type {b['type']!r}; here a block is text, image or document")
    return "\n".join(out)


def _image_part(block: dict, where: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise ValueError(f"{where}.source must be an object")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
    elif source.get("type") == "url":
        url = source.get("url") or ""
    else:
        raise ValueError(f"{where}.source.type must be 'base64' or 'url'")
    return {"type": "image_url", "image_url": {"url": url}}


def _kind(b: Any, at: str) -> str:
    """A block's type, checked (with a text block's text)."""
    if not isinstance(b, dict) or not isinstance(b.get("type"), str):
        raise ValueError(f"{at} must be a content block (an object with a 'type')")
    if b["type"] == "text" and not isinstance(b.get("text"), str):
        raise ValueError(f"{at}.text must be a string")
    return b["type"]


def _user(content: list, where: str) -> list[dict]:
    tools, parts = [], []
    for n, b in enumerate(content):
        at = f"{where}.content[{n}]"
        kind = _kind(b, at)
        if kind == "text":
            parts.append({"type": "text", "text": b["text"]})
        elif kind == "image":
            parts.append(_image_part(b, at))
        elif kind == "document":
            source = b.get("source") if isinstance(b.get("source"), dict) else {}
            if source.get("type") == "text":
                parts.append({"type": "text", "text": source.get("data") or ""})
        elif kind == "tool_result":
            if not isinstance(b.get("tool_use_id"), str):
                raise ValueError(f"{at}.tool_use_id must be a string (the id of the tool_use it answers)")
            text = _text_of(b.get("content", ""), f"{at}.content")
            msg = {"role": "tool", "tool_call_id": b["tool_use_id"], "content": text}
            if b.get("is_error"):
                msg["is_error"] = True
            tools.append(msg)
        else:
            raise ValueError(f"{at} has type {kind!r}; a user turn's blocks are text, image, document and tool_result")
    out = tools
    if parts:
        plain = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if plain else parts})
    return out


def _assistant(content: list, where: str) -> dict:
    msg: dict[str, Any] = {"role": "assistant", "content": None}
    texts, calls, thinking = [], [], []
    for n, b in enumerate(content):
        at = f"{where}.content[{n}]"
        kind = _kind(b, at)
        if kind == "text":
            texts.append(b["text"])
        elif kind in ("tool_use", "server_tool_use"):
            if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                raise ValueError(f"{at} needs a string 'id' and 'name'")
            if not isinstance(b.get("input", {}), dict):
                raise ValueError(f"{at}.input must be an object")
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": json.dumps(b.get("input", {}))}})
        elif kind == "thinking":
            thinking.append(b.get("thinking") or "")
        elif kind != "redacted_thinking":
            raise ValueError(f"{at} has type {kind!r}; an assistant turn's blocks are text, tool_use and thinking")
    if texts:
        msg["content"] = "".join(texts)
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["reasoning_content"] = "".join(thinking)
    return msg


def to_chat(req: dict) -> dict:
    """A Messages request as a chat-completions request (``ValueError`` on a malformed one)."""
    messages = req.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list of turns")
    out: list[dict] = []
    if req.get("system") is not None:
        out.append({"role": "system", "content": _text_of(req["system"], "system")})
    for n, m in enumerate(messages):
        where = f"messages[{n}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise ValueError(f"{where} must be an object with role 'user', 'assistant' or 'system'")
        content = m.get("content")
        if m["role"] == "system":  # a system turn among the messages (Claude Code 2.1 sends its environment so)
            out.append({"role": "system", "content": _text_of(content, f"{where}.content")})
            continue
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
        elif isinstance(content, list):
            out.extend(_user(content, where) if m["role"] == "user" else [_assistant(content, where)])
        else:
            raise ValueError(f"{where}.content must be a string or a list of content blocks")
    chat: dict[str, Any] = {k: req[k] for k in _SAME if k in req}
    chat["messages"] = out
    for k, v in _RENAMED.items():
        if k in req:
            chat[v] = req[k]
    tools = listed_tools(req)
    if tools is not None:
        chat_tools = []
        for n, t in tools:
            if not isinstance(t.get("name"), str):
                raise ValueError(f"tools[{n}] needs a string 'name'")
            if "input_schema" in t:  # a client tool; server tools (web search, ...) have a 'type' and no schema
                chat_tools.append(chat_tool(t["name"], t["input_schema"], t.get("description")))
        chat["tools"] = chat_tools
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        chat["tool_choice"] = ({"type": "function", "function": {"name": choice.get("name")}} if kind == "tool"
                               else {"any": "required", "auto": "auto", "none": "none"}.get(kind, "auto"))
    return chat


def from_completion(completion: dict, call_id: str, model: str | None) -> dict:
    """A chat completion's first choice as a Message."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    content: list[dict] = []
    if message.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # content parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    for k, tc in enumerate(message.get("tool_calls") or []):
        fn = tc["function"]
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            raise ValueError(f"tool_calls[{k}].function.arguments is not JSON; a Messages tool_use needs an "
                             "object as its input") from None
        if not isinstance(args, dict):
            raise ValueError(f"tool_calls[{k}].function.arguments must be a JSON object for a Messages tool_use")
        content.append({"type": "tool_use", "id": tc.get("id") or f"toolu_{call_id}_{k}", "name": fn["name"],
                        "input": args})
    usage = completion.get("usage") or {}
    stop = "tool_use" if message.get("tool_calls") else STOP_FROM_FINISH.get(choice.get("finish_reason"), "end_turn")
    out = {"id": f"msg_{call_id}", "type": "message", "role": "assistant",
           "model": completion.get("model") or model or "rock-policy", "content": content,
           "stop_reason": stop, "stop_sequence": None,
           "usage": {"input_tokens": usage.get("prompt_tokens") or 0,
                     "output_tokens": usage.get("completion_tokens") or 0}}
    carry_tokens(completion, choice, out)
    return out


def carry_tokens(completion: dict, choice: dict, out: dict) -> None:
    """Token ids and logprobs ride on the native object under ``rock`` (clients ignore unknown fields)."""
    extra = {k: v for k, v in (("prompt_token_ids", completion.get("prompt_token_ids")),
                               ("token_ids", choice.get("token_ids")), ("logprobs", choice.get("logprobs")))
             if v is not None}
    if extra:
        out["rock"] = extra


def check(message: dict, call_id: str, model: str | None) -> dict:
    """A native Message answer, checked, with what a client needs filled in."""
    content = message.get("content")
    if not isinstance(content, list):
        raise ValueError("a Message's 'content' must be a list of blocks")
    for n, b in enumerate(content):
        if not isinstance(b, dict) or b.get("type") not in ("text", "tool_use", "thinking", "redacted_thinking"):
            raise ValueError(f"content[{n}] must be a text, tool_use or thinking block")
        if b["type"] == "tool_use" and not (isinstance(b.get("name"), str) and isinstance(b.get("input", {}), dict)):
            raise ValueError(f"content[{n}] (tool_use) needs a string 'name' and an object 'input'")
        if b["type"] == "text" and not isinstance(b.get("text"), str):
            raise ValueError(f"content[{n}].text must be a string")
    out = dict(message)
    out.setdefault("id", f"msg_{call_id}")
    out.setdefault("type", "message")
    out.setdefault("role", "assistant")
    out.setdefault("model", model or "rock-policy")
    out["content"] = [dict(b, id=b.get("id") or f"toolu_{call_id}_{n}", input=b.get("input", {}))
                      if b["type"] == "tool_use" else b for n, b in enumerate(content)]
    has_tool = any(b["type"] == "tool_use" for b in content)
    out.setdefault("stop_reason", "tool_use" if has_tool else "end_turn")
    out.setdefault("stop_sequence", None)
    usage = dict(out.get("usage") or {})
    usage.setdefault("input_tokens", 0)
    usage.setdefault("output_tokens", 0)
    out["usage"] = usage
    return out


def to_completion(message: dict) -> dict:
    """A Message as a chat completion (what the records hold for every call)."""
    texts, calls, thinking = [], [], []
    for b in message.get("content") or []:
        if b.get("type") == "text":
            texts.append(b.get("text") or "")
        elif b.get("type") == "tool_use":
            calls.append(chat_tool_call(b.get("id"), b.get("name"), json.dumps(b.get("input") or {})))
        elif b.get("type") == "thinking":
            thinking.append(b.get("thinking") or "")
    return completion_from(message, texts, calls, thinking, FINISH_FROM_STOP.get(message.get("stop_reason"), "stop"))


def completion_from(native: dict, texts: list[str], calls: list[dict], reasoning: list[str], finish: str) -> dict:
    """The chat completion of a native answer (a Message or a Response) from its parts; its
    ``usage`` (input/output tokens) and ``rock`` token fields carried over."""
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if reasoning:
        msg["reasoning_content"] = "".join(reasoning)
    choice = {"index": 0, "message": msg, "finish_reason": finish}
    rock = native.get("rock") or {}
    for key in ("token_ids", "logprobs"):
        if rock.get(key) is not None:
            choice[key] = rock[key]
    usage = native.get("usage") or {}
    inp, outp = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    out = {"id": native.get("id"), "object": "chat.completion", "created": native.get("created_at") or int(time.time()),
           "model": native.get("model"), "choices": [choice],
           "usage": {"prompt_tokens": inp, "completion_tokens": outp, "total_tokens": inp + outp}}
    if rock.get("prompt_token_ids") is not None:
        out["prompt_token_ids"] = rock["prompt_token_ids"]
    return out


def error_body(status: int, message: str) -> dict:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
            529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


class MessagesFold:
    """Anthropic SSE events folded into one Message (proxy mode's record of a stream)."""

    def __init__(self) -> None:
        self.message: dict | None = None
        self.json_bufs: dict[int, str] = {}

    def event(self, data: dict) -> None:
        kind = data.get("type")
        if kind == "message_start":
            self.message = dict(data.get("message") or {}, content=[])
            return
        m = self.message
        if m is None:
            return
        if kind == "content_block_start":
            m["content"].append(dict(data.get("content_block") or {}))
        elif kind == "content_block_delta":
            i, delta = data.get("index", 0), data.get("delta") or {}
            if not 0 <= i < len(m["content"]):
                return
            block = m["content"][i]
            if delta.get("type") == "text_delta":
                block["text"] = (block.get("text") or "") + (delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                self.json_bufs[i] = self.json_bufs.get(i, "") + (delta.get("partial_json") or "")
            elif delta.get("type") == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
        elif kind == "content_block_stop":
            i = data.get("index", 0)
            if i in self.json_bufs and 0 <= i < len(m["content"]):
                try:
                    m["content"][i]["input"] = json.loads(self.json_bufs[i] or "{}")
                except ValueError:
                    m["content"][i]["input"] = {"_unparsed": self.json_bufs[i]}
        elif kind == "message_delta":
            m.update({k: v for k, v in (data.get("delta") or {}).items() if v is not None})
            m["usage"] = dict(m.get("usage") or {}, **{k: v for k, v in (data.get("usage") or {}).items()
                                                       if v is not None})

    def result(self) -> dict | None:
        return self.message
