"""Server-sent chat-completion chunks, parsed as they pass and folded into one completion.

Proxy mode passes an upstream's stream through byte for byte; this runs beside it so the
record holds the whole answer (content, tool calls, finish reasons, usage, and the engine's
token ids and logprobs, which vLLM and SGLang put on each chunk's choice).
"""

from __future__ import annotations

import json
from typing import Any


class StreamFold:
    def __init__(self) -> None:
        self._buf = b""
        self.base: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict | None = None
        self.extra: dict[str, Any] = {}
        self.done = False

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            cut = self._buf.find(b"\n\n")
            if cut < 0:
                return
            event, self._buf = self._buf[:cut], self._buf[cut + 2:]
            for line in event.split(b"\n"):
                line = line.rstrip(b"\r")
                if line.startswith(b"data:"):
                    self._data(line[5:].strip())

    def _data(self, raw: bytes) -> None:
        if raw == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(raw)
        except ValueError:
            return
        if not isinstance(chunk, dict):
            return
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in self.base:
                self.base[key] = chunk[key]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("prompt_token_ids") is not None:
            self.extra["prompt_token_ids"] = chunk["prompt_token_ids"]
        for part in chunk.get("choices") or []:
            self._choice(part)

    def _choice(self, part: dict) -> None:
        i = part.get("index", 0)
        c = self.choices.setdefault(i, {"index": i, "message": {"role": "assistant", "content": None},
                                        "finish_reason": None})
        msg = c["message"]
        delta = part.get("delta") or {}
        for key, value in delta.items():
            if key == "role" and value:
                msg["role"] = value
            elif key == "tool_calls":
                calls = msg.setdefault("tool_calls", [])
                for tc in value or []:
                    j = tc.get("index", len(calls))
                    while len(calls) <= j:
                        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                    slot = calls[j]
                    if tc.get("id"):
                        slot["id"] = tc["id"]
                    fn = tc.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
            elif isinstance(value, str):
                msg[key] = (msg.get(key) or "") + value
            elif value is not None:
                msg[key] = value
        if part.get("finish_reason"):
            c["finish_reason"] = part["finish_reason"]
        if part.get("token_ids"):
            c.setdefault("token_ids", []).extend(part["token_ids"])
        probs = part.get("logprobs")
        if isinstance(probs, dict):
            agg = c.setdefault("logprobs", {"content": []})
            agg["content"].extend(probs.get("content") or [])

    def completion(self) -> dict:
        out = {"id": self.base.get("id"), "object": "chat.completion", "created": self.base.get("created"),
               "model": self.base.get("model"), "choices": [self.choices[i] for i in sorted(self.choices)]}
        if self.usage is not None:
            out["usage"] = self.usage
        out.update(self.extra)
        return out
