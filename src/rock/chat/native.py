"""The model endpoint's three wire formats, seen by the trainer in one form.

A sandbox's harness may call ``POST /v1/chat/completions`` (api ``chat``), Anthropic's
``POST /v1/messages`` (api ``messages``) or OpenAI's ``POST /v1/responses`` (api ``responses``).
Every call reaches the trainer as a chat-completions request (``PendingCall.request``) with the
native request beside it (``PendingCall.native = {"api", "request"}``; absent for chat calls); the
trainer answers with a chat completion or with the native object (a Message, a Response), and the
harness gets the native object (JSON, or the API's own stream, rendered by the agent). The records
hold the chat form of both sides (``request``, ``response``: what token-level export reads) and the
native ones in ``CallRecord.native``.

Token ids and logprobs on a native answer ride under ``"rock": {"prompt_token_ids", "token_ids",
"logprobs"}`` (clients ignore unknown fields); a chat completion carries them where vLLM puts them.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from rock.chat import native_messages as messages
from rock.chat import native_responses as responses
from rock.chat.completion import normalize
from rock.chat.stream import StreamFold

if TYPE_CHECKING:
    from rock.chat.endpoint import Call

APIS = ("chat", "messages", "responses")
PATHS = {"chat": "/chat/completions", "messages": "/messages", "responses": "/responses"}


class Conversations:
    """The conversation each Response of one endpoint ended (chat messages, without its
    instructions), by response id: what ``previous_response_id`` continues. The newest ``keep``
    (``chat.keep_responses``) are kept."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._by_id: OrderedDict[str, list[dict]] = OrderedDict()

    def get(self, response_id: str) -> list[dict] | None:
        return self._by_id.get(response_id)

    def put(self, response_id: str, conversation: list[dict]) -> None:
        self._by_id[response_id] = conversation
        while len(self._by_id) > self.keep:
            self._by_id.popitem(last=False)


def inbound(api: str, request: dict, conversations: Conversations | None = None) -> dict:
    """The chat form of a native request; ``ValueError`` says what is malformed."""
    if api == "messages":
        return messages.to_chat(request)
    prior = None
    prev = request.get("previous_response_id")
    if prev is not None:
        prior = conversations.get(prev) if conversations is not None and isinstance(prev, str) else None
        if prior is None:
            raise ValueError(f"previous_response_id {prev!r} is not a response of this endpoint (it keeps its last "
                             f"{conversations.keep if conversations is not None else 0})")
    return responses.to_chat(request, prior)


def is_native(api: str, answer: dict) -> bool:
    """Whether a trainer's answer is the API's own object rather than a chat completion."""
    return (api == "messages" and answer.get("type") == "message") or (
        api == "responses" and (answer.get("object") == "response" or "output" in answer))


def outbound(call: "Call", answer: dict) -> tuple[dict, dict]:
    """(the native object the harness gets, its chat form for the record) for an answer in either
    form; ``ValueError`` when it is neither a valid chat completion nor a valid native object."""
    api, req = call.native["api"], call.native["request"]
    call_id = f"rock_{call.endpoint.sandbox_id[-12:]}_{call.index}"
    if api == "messages":
        if is_native(api, answer):
            obj = messages.check(answer, call_id, req.get("model"))
            return obj, messages.to_completion(obj)
        completion = normalize(answer, call)
        return messages.from_completion(completion, call_id, req.get("model")), completion
    if is_native(api, answer):
        obj = responses.check(answer, call_id, req)
        return obj, responses.to_completion(obj)
    completion = normalize(answer, call)
    return responses.from_completion(completion, call_id, req), completion


def remember(call: "Call", native_response: dict, completion: dict) -> None:
    """After a Response: the conversation it ended, for a later ``previous_response_id``."""
    if call.native is None or call.native["api"] != "responses" or not native_response.get("id"):
        return
    conversation = [m for m in call.request.get("messages") or ()]
    if call.native["request"].get("instructions") and conversation and conversation[0].get("role") == "system":
        conversation = conversation[1:]
    reply = (completion.get("choices") or [{}])[0].get("message")
    if isinstance(reply, dict):
        conversation.append({k: v for k, v in reply.items() if k in ("role", "content", "tool_calls",
                                                                       "reasoning_content")})
    call.endpoint.conversations.put(native_response["id"], conversation)


def error_body(api: str | None, status: int, message: str) -> bytes:
    """An error in the shape the API's clients parse."""
    if api == "messages":
        return json.dumps(messages.error_body(status, message)).encode()
    if api == "responses":
        return json.dumps(responses.error_body(status, message)).encode()
    return json.dumps({"error": {"message": message, "type": "rock_model_endpoint", "code": status}}).encode()


def to_completion(api: str, native_response: dict) -> dict:
    """A native answer (an upstream's, or a replayed one) in chat form."""
    return messages.to_completion(native_response) if api == "messages" else responses.to_completion(native_response)


class NativeStreamFold(StreamFold):
    """A native API's server-sent events, parsed as they pass (``StreamFold``'s framing) and folded
    into one native object (proxy mode's record of a streamed call); ``completion()`` is its chat form."""

    def __init__(self, api: str) -> None:
        super().__init__()
        self.api = api
        self._fold: Any = messages.MessagesFold() if api == "messages" else responses.ResponsesFold()

    def _data(self, raw: bytes) -> None:
        try:
            parsed = json.loads(raw)
        except ValueError:
            return
        if isinstance(parsed, dict):
            self._fold.event(parsed)

    def native(self) -> dict | None:
        return self._fold.result()

    def completion(self) -> dict:
        obj = self.native()
        return to_completion(self.api, obj) if obj is not None else {"choices": []}
