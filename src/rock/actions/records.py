"""Model-call records: one per chat call a sandbox made, kept by the admin, never in the sandbox.

Shared by the admin's Chat front door, which writes them (rock.chat.records.RecordLog),
and by what reads them: the SDK's trainer and the agentic harnesses.

A record holds what the trainer needs to train on the call: the request (messages, tools,
sampling fields), the response (a stream aggregated into one completion), usage, and the
upstream's token ids and logprobs when it sent them. ``to_rock`` / ``from_rock`` convert to and
from ROCK's trajectory JSONL (``{model, stream, status, response_time, start_time, end_time,
request, response, error}``), so a ROCK replay file round-trips.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, Field


class CallRecord(BaseModel):
    """One model call a sandbox made through its model endpoint, as the admin recorded it: the request, the answer
    (or the error the sandbox's client got), usage, timings (Unix seconds) and, when the upstream sent them,
    token ids and logprobs for training. ``status`` stays ``pending`` until the call is answered."""

    sandbox_id: str
    index: int
    mode: str = Field(description="local, proxy or replay")
    model: str | None = None
    stream: bool = False
    status: Literal["pending", "success", "failure", "timeout"] = "pending"
    http_status: int | None = Field(default=None, description="what the sandbox's client received")
    error: str | None = None
    start_time: float
    end_time: float | None = None
    latency_ms: float | None = None
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    prompt_token_ids: list[int] | None = None
    token_ids: list[list[int] | None] | None = Field(default=None, description="per choice, when the upstream sent them")
    logprobs: list[Any] | None = Field(default=None, description="per choice, when the upstream sent them")
    attempts: int = Field(default=0, description="proxy mode: upstream requests made (retries included)")
    native: dict[str, Any] | None = Field(
        default=None, description="a Messages or Responses call: {api, request, response} as the harness sent and "
        "got them (request and response above are their chat form)")
    answered_via: Literal["trainer", "sandbox_cli", "upstream", "replay", "admin"] | None = Field(
        default=None, description="who supplied the answer; sandbox_cli: ROCK's in-sandbox anti-call-llm command, "
        "i.e. code inside the sandbox")

    @classmethod
    def begin(cls, **fields: Any) -> "CallRecord":
        """A pending record from fields the admin made itself (of the right types): built without
        validation or pydantic's per-field default lookups (``model_construct`` spends ~20 us on
        those), as it is on every model call's path."""
        record = cls.__new__(cls)
        values = {name: fields[name] if name in fields else _DEFAULTS[name] for name in _DEFAULTS}  # field order
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", set(fields))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    def finish(self, status: str, http_status: int, response: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Close the record: set the status, the HTTP status the sandbox's client got, the end time and latency,
        and, from a completion ``response``, its usage, token ids and logprobs (kept only when some choice had
        them). Skips validation, as it runs on every call's path."""
        # Straight into __dict__: pydantic's __setattr__ costs a few us a field, on every call's path.
        end = time.time()
        done = {"status": status, "http_status": http_status, "end_time": end,
                "latency_ms": round((end - self.start_time) * 1000, 3), "error": error}
        if response is not None:
            choices = [c for c in response.get("choices") or [] if isinstance(c, dict)]
            ids = [c.get("token_ids") for c in choices]
            probs = [c.get("logprobs") for c in choices]
            prompt = response.get("prompt_token_ids")
            done.update(response=response, usage=response.get("usage"),
                        token_ids=ids if any(i is not None for i in ids) else None,
                        logprobs=probs if any(p is not None for p in probs) else None,
                        prompt_token_ids=prompt if isinstance(prompt, list) else None)
        self.__dict__.update(done)
        self.__pydantic_fields_set__.update(done)

    def to_rock(self) -> dict[str, Any]:
        """ROCK's trajectory line (its ``TrajectoryRecorder``)."""
        return {"model": self.request.get("model"), "stream": self.stream,
                "status": "success" if self.status == "success" else "failure",
                "response_time": (self.end_time or self.start_time) - self.start_time,
                "start_time": self.start_time, "end_time": self.end_time, "request": self.request,
                "response": self.response, "error": self.error}


# Every field in order, with its default (None for a required one, which ``begin`` is given).
_DEFAULTS = {name: None if f.is_required() else f.get_default(call_default_factory=True)
             for name, f in CallRecord.model_fields.items()}


def from_rock(line: dict[str, Any]) -> dict[str, Any]:
    """A ROCK trajectory line checked for what replay needs (a ``response`` object)."""
    if not isinstance(line, dict) or not isinstance(line.get("response"), dict):
        raise ValueError("each replay record must be a JSON object with a 'response' object "
                         "(a line of ROCK's trajectory JSONL)")
    return line


def rock_jsonl(records: list[CallRecord]) -> str:
    """The finished records as ROCK's trajectory JSONL, one line a call; pending calls are left out."""
    return "".join(json.dumps(r.to_rock(), ensure_ascii=False, default=str) + "\n" for r in records
                   if r.status != "pending")


def read_rock_jsonl(text: str) -> list[dict[str, Any]]:
    """Parse ROCK's trajectory JSONL (blank lines skipped) into replay records; raises ValueError naming the first
    line that is not a JSON object with a ``response`` object."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(from_rock(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"line {n}: {exc}") from None
    return out
