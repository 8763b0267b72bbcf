"""Anthropic's Messages stream: a whole Message as the server-sent events its SDK parses.

``message_start`` (the message with empty content), per content block ``content_block_start``,
one ``content_block_delta`` (``text_delta``, ``input_json_delta`` or ``thinking_delta``) and
``content_block_stop``, then ``message_delta`` (stop reason, output tokens) and ``message_stop``.
Every event has its ``event:`` line: Anthropic's SDK skips data without one.

Standard library only (runs in the sandbox's agent).
"""

from .. import protocol


def _event(name, obj):
    return b"event: " + name.encode() + b"\ndata: " + protocol.dumps(obj).encode() + b"\n\n"


def count_tokens(body):
    """``POST /v1/messages/count_tokens``: an estimate, about four bytes a token, of the system
    prompt, messages and tools (no tokenizer lives in the sandbox; harnesses use it to decide when
    to compact, where an estimate serves)."""
    size = sum(len(protocol.dumps(body.get(k)).encode()) for k in ("system", "messages", "tools") if k in body)
    return {"input_tokens": (size + 3) // 4}


def sse_from_message(message):
    """The events of a streamed call for ``message`` (a whole Message), in order."""
    usage = dict(message.get("usage") or {})
    start = {k: v for k, v in message.items() if k not in ("content", "stop_reason", "stop_sequence", "usage")}
    start.update(content=[], stop_reason=None, stop_sequence=None,
                 usage={"input_tokens": usage.get("input_tokens") or 0, "output_tokens": 0})
    yield _event("message_start", {"type": "message_start", "message": start})
    for i, block in enumerate(message.get("content") or []):
        kind = block.get("type")
        if kind == "tool_use":
            head = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            delta = {"type": "input_json_delta", "partial_json": protocol.dumps(block.get("input") or {})}
        elif kind == "thinking":
            head = {"type": "thinking", "thinking": "", "signature": ""}
            delta = {"type": "thinking_delta", "thinking": block.get("thinking") or ""}
        elif kind == "text":
            head = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block.get("text") or ""}
        else:  # redacted thinking and the like arrive whole in their start event
            head, delta = block, None
        yield _event("content_block_start", {"type": "content_block_start", "index": i, "content_block": head})
        if delta is not None:
            yield _event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
        if kind == "thinking" and block.get("signature"):
            yield _event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                "type": "signature_delta", "signature": block["signature"]}})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": i})
    yield _event("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": message.get("stop_reason") or "end_turn",
                                             "stop_sequence": message.get("stop_sequence")},
                                   "usage": {"output_tokens": usage.get("output_tokens") or 0}})
    yield _event("message_stop", {"type": "message_stop"})


def error_body(message, status):
    """Anthropic's error shape."""
    kind = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large",
            429: "rate_limit_error"}.get(status, "api_error")
    return protocol.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
