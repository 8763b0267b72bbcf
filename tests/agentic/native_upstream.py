"""A scripted upstream speaking Anthropic's Messages and OpenAI's Responses natively on the host's
loopback (proxy mode's 'inference server'): JSON, or each API's stream written event by event the
way the vendors' servers write them (a ``ping``, text in several deltas, tool input in pieces)."""

from __future__ import annotations

import json

from tests.agentic.upstream import LoopbackServer, QuietHandler


def _sse(name: str, obj: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()


def message_events(n: int, model: str) -> list[bytes]:
    msg = {"id": f"msg_up{n}", "type": "message", "role": "assistant", "model": model, "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}
    out = [_sse("message_start", {"type": "message_start", "message": msg}), _sse("ping", {"type": "ping"}),
           _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}})]
    out += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": t}}) for t in ("ans", f"wer {n}")]
    out += [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": f"toolu_{n}", "name": "bash", "input": {}}})]
    out += [_sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                         "delta": {"type": "input_json_delta", "partial_json": p}})
            for p in ('{"cmd": ', '"ls"}')]
    out += [_sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
            _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                   "usage": {"output_tokens": 6}}),
            _sse("message_stop", {"type": "message_stop"})]
    return out


def response_obj(n: int, model: str, status: str = "completed") -> dict:
    item = {"type": "message", "id": f"msg_up{n}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": f"answer {n}", "annotations": []}]}
    return {"id": f"resp_up{n}", "object": "response", "created_at": 1, "status": status, "model": model,
            "output": [item] if status == "completed" else [], "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "parallel_tool_calls": True, "temperature": None, "top_p": None,
            "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}}


def response_events(n: int, model: str) -> list[bytes]:
    done = response_obj(n, model)
    item = done["output"][0]
    seq = iter(range(100))

    def ev(obj):
        obj["sequence_number"] = next(seq)
        return _sse(obj["type"], obj)

    out = [ev({"type": "response.created", "response": response_obj(n, model, "in_progress")}),
           ev({"type": "response.output_item.added", "output_index": 0, "item": dict(item, content=[])}),
           ev({"type": "response.content_part.added", "item_id": item["id"], "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}})]
    out += [ev({"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0,
                "delta": t, "logprobs": []}) for t in ("ans", f"wer {n}")]
    out += [ev({"type": "response.output_text.done", "item_id": item["id"], "output_index": 0, "content_index": 0,
                "text": f"answer {n}", "logprobs": []}),
            ev({"type": "response.content_part.done", "item_id": item["id"], "output_index": 0, "content_index": 0,
                "part": item["content"][0]}),
            ev({"type": "response.output_item.done", "output_index": 0, "item": item}),
            ev({"type": "response.completed", "response": done})]
    return out


class NativeUpstream(LoopbackServer):
    def __init__(self):
        self.requests: list[tuple[str, dict, dict]] = []  # (path, headers, body)
        super().__init__()

    def _handler(self):
        up = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self._json()
                up.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                n, model = len(up.requests), body.get("model") or "m"
                if self.path not in ("/v1/messages", "/v1/responses"):
                    return self._send(404, b'{"error": "no such path"}', "application/json")
                if body.get("stream"):
                    events = message_events(n, model) if self.path == "/v1/messages" else response_events(n, model)
                    return self._sse(events)
                if self.path == "/v1/messages":
                    out = {"id": f"msg_up{n}", "type": "message", "role": "assistant", "model": model,
                           "content": [{"type": "text", "text": f"answer {n}"}], "stop_reason": "end_turn",
                           "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 2}}
                else:
                    out = response_obj(n, model)
                self._send(200, json.dumps(out).encode(), "application/json")

        return Handler
