"""A scripted model server on the host's loopback that knows a task's fix, speaking each terminal agent's own API
the way the vendors' servers do: chat completions (Qwen Code, opencode), Anthropic Messages (Claude Code) and
OpenAI Responses (Codex), as JSON or, when asked, as each API's event stream. It answers a call that offers its
shell tool with that tool running the fix, the call after the tool's result with a final text, and any other
call (a title, a topic check, a side agent) with "ok". ``log`` keeps every (path, request, answer) in order, the
answer as the whole object the stream spelled out."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from tests.agentic.upstream import LoopbackServer, QuietHandler

DONE = "The fix is applied."


def _event(name: str | None, obj: dict) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(obj).encode() + b"\n\n"


def _offers(path: str, body: dict) -> tuple[list[str], bool]:
    """(the tools' names, whether a tool's result is in the history), read in the API's own shape."""
    tools = body.get("tools") or ()
    if path == "/v1/chat/completions":
        return ([(t.get("function") or {}).get("name") for t in tools],
                any(m.get("role") == "tool" for m in body.get("messages") or ()))
    if path == "/v1/messages":
        blocks = [b for m in body.get("messages") or () if m.get("role") == "user" and isinstance(m.get("content"), list)
                  for b in m["content"]]
        return [t.get("name") for t in tools], any(b.get("type") == "tool_result" for b in blocks)
    items = body.get("input") if isinstance(body.get("input"), list) else []
    return [t.get("name") for t in tools], any(i.get("type") == "function_call_output" for i in items)


class ScriptedModel(LoopbackServer):
    """``ScriptedModel(shell, args)``: the agent's shell tool name and the arguments that run the fix."""

    def __init__(self, shell: str, args: dict):
        self.shell, self.args = shell, args
        self.log: list[tuple[str, dict, dict]] = []
        super().__init__()

    def decide(self, path: str, body: dict) -> tuple[dict | None, str]:
        """(the tool call's arguments, or None for a text answer; the text)."""
        tools, answered = _offers(path, body)
        if self.shell not in tools:
            return None, "ok"
        return (None if answered else self.args), DONE

    def _handler(self):
        up = self

        class Handler(QuietHandler):
            def do_GET(self):
                self._send(404, b'{"error": {"message": "no such path"}}', "application/json")

            def do_POST(self):
                path, body = urlsplit(self.path).path, self._json()
                if path == "/v1/messages/count_tokens":
                    return self._send(200, b'{"input_tokens": 100}', "application/json")
                if path not in ("/v1/chat/completions", "/v1/messages", "/v1/responses"):
                    return self._send(404, b'{"error": {"message": "no such path"}}', "application/json")
                n, model = len(up.log) + 1, body.get("model") or "m"
                args, text = up.decide(path, body)
                make = {"/v1/chat/completions": chat, "/v1/messages": messages, "/v1/responses": responses}[path]
                whole, events = make(n, model, up.shell, args, text)
                up.log.append((path, body, whole))
                if body.get("stream"):
                    return self._sse(events)
                self._send(200, json.dumps(whole).encode(), "application/json")

        return Handler


def chat(n: int, model: str, shell: str, args: dict | None, text: str) -> tuple[dict, list[bytes]]:
    msg: dict = {"role": "assistant", "content": text if args is None else None}
    if args is not None:
        msg["tool_calls"] = [{"id": f"call_{n}", "type": "function",
                              "function": {"name": shell, "arguments": json.dumps(args)}}]
    finish = "stop" if args is None else "tool_calls"
    usage = {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}
    head = {"id": f"chat-{n}", "created": 1, "model": model}
    whole = {**head, "object": "chat.completion", "usage": usage,
             "choices": [{"index": 0, "message": msg, "finish_reason": finish}]}
    delta = {"role": "assistant", "content": msg["content"] or ""}
    if args is not None:
        delta["tool_calls"] = [dict(tc, index=0) for tc in msg["tool_calls"]]
    chunks = [{**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
              {**head, "object": "chat.completion.chunk", "usage": usage,
               "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}]
    return whole, [_event(None, c) for c in chunks] + [b"data: [DONE]\n\n"]


def messages(n: int, model: str, shell: str, args: dict | None, text: str) -> tuple[dict, list[bytes]]:
    block = ({"type": "text", "text": text} if args is None
             else {"type": "tool_use", "id": f"toolu_{n}", "name": shell, "input": args})
    stop = "end_turn" if args is None else "tool_use"
    whole = {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": model, "content": [block],
             "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 5}}
    start = dict(whole, content=[], stop_reason=None, usage={"input_tokens": 50, "output_tokens": 1})
    events = [_event("message_start", {"type": "message_start", "message": start}), _event("ping", {"type": "ping"})]
    if args is None:
        first, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": text}
    else:
        first, delta = dict(block, input={}), {"type": "input_json_delta", "partial_json": json.dumps(args)}
    events += [_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": first}),
               _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
               _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
               _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": 5}}),
               _event("message_stop", {"type": "message_stop"})]
    return whole, events


def responses(n: int, model: str, shell: str, args: dict | None, text: str) -> tuple[dict, list[bytes]]:
    if args is None:
        item = {"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
    else:
        item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": shell,
                "arguments": json.dumps(args), "status": "completed"}

    def response(status: str, output: list) -> dict:
        return {"id": f"resp_{n}", "object": "response", "created_at": 1, "status": status, "model": model,
                "output": output, "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
                "parallel_tool_calls": True, "temperature": None, "top_p": None, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 50, "output_tokens": 5, "total_tokens": 55,
                          "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}}

    whole = response("completed", [item])
    seq = iter(range(100))

    def ev(obj: dict) -> bytes:
        obj["sequence_number"] = next(seq)
        return _event(obj["type"], obj)

    at = {"item_id": item["id"], "output_index": 0}
    events = [ev({"type": "response.created", "response": response("in_progress", [])})]
    if args is None:
        part = item["content"][0]
        events += [ev({"type": "response.output_item.added", "output_index": 0, "item": dict(item, content=[],
                                                                                           status="in_progress")}),
                   ev({"type": "response.content_part.added", **at, "content_index": 0, "part": dict(part, text="")}),
                   ev({"type": "response.output_text.delta", **at, "content_index": 0, "delta": text, "logprobs": []}),
                   ev({"type": "response.output_text.done", **at, "content_index": 0, "text": text, "logprobs": []}),
                   ev({"type": "response.content_part.done", **at, "content_index": 0, "part": part})]
    else:
        events += [ev({"type": "response.output_item.added", "output_index": 0,
                       "item": dict(item, arguments="", status="in_progress")}),
                   ev({"type": "response.function_call_arguments.delta", **at, "delta": item["arguments"]}),
                   ev({"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]})]
    events += [ev({"type": "response.output_item.done", "output_index": 0, "item": item}),
               ev({"type": "response.completed", "response": whole})]
    return whole, events
