"""OpenAI's Responses stream: a whole Response as the server-sent events its SDK parses.

``response.created`` and ``response.in_progress`` (no output yet), per output item
``response.output_item.added``, its content (a message: ``content_part.added``,
``output_text.delta``, ``output_text.done``, ``content_part.done``; a function call:
``function_call_arguments.delta`` and ``.done``; a custom tool call: ``custom_tool_call_input``
``.delta`` and ``.done``), ``response.output_item.done``, and ``response.completed`` (or
``response.incomplete``) with the whole Response. Events are numbered (``sequence_number``).

Standard library only (runs in the sandbox's agent).
"""

from .. import protocol


def sse_from_response(response):
    """The events of a streamed call for ``response`` (a whole Response), in order."""
    seq = [0]

    def event(obj):
        obj["sequence_number"] = seq[0]
        seq[0] += 1
        return b"event: " + obj["type"].encode() + b"\ndata: " + protocol.dumps(obj).encode() + b"\n\n"

    shell = dict(response, status="in_progress", output=[], usage=None)
    yield event({"type": "response.created", "response": shell})
    yield event({"type": "response.in_progress", "response": shell})
    for i, item in enumerate(response.get("output") or []):
        kind, item_id = item.get("type"), item.get("id")
        if kind == "message":
            yield event({"type": "response.output_item.added", "output_index": i,
                         "item": dict(item, status="in_progress", content=[])})
            for j, part in enumerate(item.get("content") or []):
                empty = dict(part, text="") if part.get("type") == "output_text" else part
                yield event({"type": "response.content_part.added", "item_id": item_id, "output_index": i,
                             "content_index": j, "part": empty})
                if part.get("type") == "output_text":
                    yield event({"type": "response.output_text.delta", "item_id": item_id, "output_index": i,
                                 "content_index": j, "delta": part.get("text") or "", "logprobs": []})
                    yield event({"type": "response.output_text.done", "item_id": item_id, "output_index": i,
                                 "content_index": j, "text": part.get("text") or "", "logprobs": []})
                yield event({"type": "response.content_part.done", "item_id": item_id, "output_index": i,
                             "content_index": j, "part": part})
        elif kind == "function_call":
            yield event({"type": "response.output_item.added", "output_index": i,
                         "item": dict(item, status="in_progress", arguments="")})
            args = item.get("arguments") or ""
            yield event({"type": "response.function_call_arguments.delta", "item_id": item_id,
                         "output_index": i, "delta": args})
            yield event({"type": "response.function_call_arguments.done", "item_id": item_id,
                         "output_index": i, "name": item.get("name"), "arguments": args})
        elif kind == "custom_tool_call":
            yield event({"type": "response.output_item.added", "output_index": i,
                         "item": dict(item, status="in_progress", input="")})
            yield event({"type": "response.custom_tool_call_input.delta", "item_id": item_id,
                         "output_index": i, "delta": item.get("input") or ""})
            yield event({"type": "response.custom_tool_call_input.done", "item_id": item_id,
                         "output_index": i, "input": item.get("input") or ""})
        else:  # reasoning and the like: added whole
            yield event({"type": "response.output_item.added", "output_index": i, "item": item})
        yield event({"type": "response.output_item.done", "output_index": i, "item": item})
    final = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
    yield event({"type": final, "response": response})


def error_body(message, status):
    """OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return protocol.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
