"""Request and response models of the Chat protocol (the model endpoint inside each sandbox).

Shared by the admin's Chat hub and routes (``rock.chat``, ``rock.admin.chat``) and the SDK (``rock.sdk.model``,
``rock.sdk.sandbox.model_service``). Unknown fields are refused, so a misspelt option fails
loudly instead of being ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from rock.actions.numbers import numbers_only
from rock.actions.sandbox import SandboxId


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointLimits(_Strict):
    """Per session: a call past a limit is answered 429 inside the sandbox and recorded."""

    max_calls: int | None = Field(default=None, ge=1, description="most model calls the session may make")
    max_seconds: float | None = Field(default=None, gt=0, description="wall time from the endpoint's start; then "
                                      "the session ends (calls held or made later: 429 with the reason)")
    max_body_bytes: int = Field(default=8 << 20, ge=1024, le=64 << 20,
                                description="largest request body a call may send (413 above it)")


# An http(s) URL with a host name or IPv4 address, an optional port and a printable path: what the
# validator below takes, said in the schema.
URL_PATTERN = (r"^https?://[A-Za-z0-9.-]*[A-Za-z0-9](:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}"
               r"|[1-5][0-9]{4}|[0-9]{1,4}))?(/[!-~]*)?$")
# What ``_mode`` refuses of the fields together, said in the schema too: proxy mode needs an
# upstream or replay records; local mode has neither.
_MODE_RULES: JsonDict = {"allOf": [{
    "if": {"required": ["type"], "properties": {"type": {"const": "proxy"}}},
    "then": {"anyOf": [{"required": ["proxy_base_url"], "properties": {"proxy_base_url": {"type": "string"}}},
                       {"required": ["replay"], "properties": {"replay": {"type": "array"}}}]},
    "else": {"properties": {"proxy_base_url": {"type": "null"}, "replay": {"type": "null"},
                            "proxy_api_key": {"type": "null"}}},
}]}


class ModelEndpointConfig(_Strict):
    """How a sandbox's model endpoint answers (ROCK's ``--type``: local or proxy; a replay is proxy
    mode served from ``replay`` records)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_MODE_RULES)

    type: Literal["local", "proxy"] = "local"
    port: int = Field(default=8080, ge=0, le=65535, description="loopback port inside the sandbox (0: any free one)")
    host: Literal["127.0.0.1", "0.0.0.0", "::1"] = "127.0.0.1"
    models: list[str] = Field(default_factory=lambda: ["rock-policy"], min_length=1, max_length=64,
                              description="what GET /v1/models lists")
    call_timeout: float = Field(default=600, gt=0, le=86400,
                                description="local mode: how long a call waits for the trainer's answer")
    proxy_base_url: str | None = Field(default=None, max_length=2048, json_schema_extra={"pattern": URL_PATTERN},
                                       description="proxy mode: the upstream's OpenAI base URL (…/v1); the admin connects to it")
    proxy_api_key: str | None = Field(default=None, max_length=4096, description="proxy mode: sent to the upstream "
                                      "as 'Authorization: Bearer …' by the admin; never enters the sandbox")
    retryable_status_codes: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504], max_length=32)
    retry_attempts: int = Field(default=6, ge=1, le=20, description="proxy mode: tries per call (ROCK: 6)")
    retry_delay: float = Field(default=2.0, ge=0, le=60, description="proxy mode: first back-off, doubled per try")
    request_timeout: float = Field(default=120, gt=0, le=3600, description="proxy mode: per upstream request")
    replay: list[dict[str, Any]] | None = Field(default=None, description="replay mode: ROCK trajectory records "
                                                "(one per call, each with a 'response'), served in order",
                                                json_schema_extra={"items": {"type": "object", "required": ["response"],
                                                                             "properties": {"response": {"type": "object"}}}})
    limits: EndpointLimits = Field(default_factory=EndpointLimits)

    @field_validator("proxy_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import httpx

        try:
            url = httpx.URL(value)
        except Exception as exc:  # noqa: BLE001 - httpx's own message says what is wrong
            raise ValueError(f"proxy_base_url is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("proxy_base_url must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000/v1")
        if url.userinfo:
            raise ValueError("proxy_base_url must not carry credentials; the sandbox's client sends its own key")
        if not re.match(URL_PATTERN, value):
            raise ValueError("proxy_base_url must be http(s)://host[:port][/path] with a host name or IPv4 address "
                             "and a path of printable ASCII")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mode(self) -> "ModelEndpointConfig":
        if self.type == "proxy" and self.replay is None and not self.proxy_base_url:
            raise ValueError("proxy mode needs proxy_base_url (an upstream to forward to) or replay records")
        for n, record in enumerate(self.replay or ()):
            if not isinstance(record.get("response"), dict):
                raise ValueError(f"replay[{n}] has no 'response' object (each record is a line of ROCK's trajectory JSONL)")
        if self.type == "local" and (self.proxy_base_url or self.replay is not None or self.proxy_api_key):
            raise ValueError("proxy_base_url, proxy_api_key and replay belong to type='proxy'")
        return self


class StartEndpointRequest(ModelEndpointConfig):
    """Start the sandbox's model endpoint: the sandbox, and how the endpoint answers (the fields of
    ModelEndpointConfig)."""

    sandbox_id: SandboxId


class SandboxRef(_Strict):
    """Names the sandbox whose model endpoint to stop or look at."""

    sandbox_id: SandboxId


class WatchRequest(_Strict):
    """End the sandbox's model session (SESSION_END) when process ``pid`` inside the sandbox exits, e.g. the
    agent's process."""

    sandbox_id: SandboxId
    pid: int = Field(ge=1, le=1 << 22)


class AnswerError(_Strict):
    """An error for the agent's client instead of a completion: it receives HTTP ``status`` with ``message``."""

    status: int = Field(default=500, ge=400, le=599)
    message: str = Field(max_length=10000)


class Answer(_Strict):
    """The trainer's answer to one call: a chat completion (OpenAI's shape), or an error the
    agent's client receives as that HTTP status."""

    # exactly one of the two, as ``_one`` checks
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["response"], "properties": {"response": {"type": "object"}}},
        {"required": ["error"], "properties": {"error": {"type": "object"}}}]})

    sandbox_id: SandboxId
    index: int = Field(ge=1)
    response: dict[str, Any] | None = None
    error: AnswerError | None = None
    _numbers = numbers_only("index")  # a number, never a boolean or a numeric string

    @model_validator(mode="after")
    def _one(self) -> "Answer":
        if (self.response is None) == (self.error is None):
            raise ValueError("an answer carries exactly one of 'response' (a chat completion) or 'error'")
        return self


class ExchangeRequest(_Strict):
    """One round trip of the trainer's fast path: answers go in, the next pending calls come out."""

    answers: list[Answer] = Field(default_factory=list, max_length=10000)
    max_calls: int = Field(default=256, ge=0, le=10000, description="most calls to take")
    wait: float = Field(default=10, ge=0, le=300,
                        description="seconds to wait for a first call when none is pending")
    sandbox_ids: list[SandboxId] | None = Field(default=None, max_length=10000,
                                                description="only these sandboxes' calls (default: all of the caller's)")
    _numbers = numbers_only("max_calls", "wait")


class PendingCall(BaseModel):
    """A model call waiting for the trainer's answer: which sandbox made it, its index in that sandbox's session
    (answer with the same pair), and the request."""

    sandbox_id: str
    index: int
    request: dict[str, Any] = Field(description="the call as a chat-completions request, whatever API it came by")
    native: dict[str, Any] | None = Field(default=None, description="a Messages or Responses call: {api: "
                                          "'messages'|'responses', request: the body as the harness sent it}; "
                                          "answer with a chat completion or the API's own object")


class Rejected(BaseModel):
    """An answer the admin did not apply (the call timed out, was already answered, is unknown, ...): the call, the
    HTTP status the single-answer route would give, and why."""

    sandbox_id: str
    index: int
    status: int
    reason: str


class ExchangeResult(BaseModel):
    """What an exchange returns: the calls taken (now the caller's to answer), the sessions that ended, and the
    answers that were not applied."""

    calls: list[PendingCall]
    ended: list[str] = Field(description="sandboxes whose session ended (SESSION_END) since the last exchange")
    rejected: list[Rejected] = Field(description="answers not applied, and why (the call timed out, was answered, ...)")


class AntiCallRequest(_Strict):
    """ROCK's ``anti_call_llm``: answer call ``index`` (not for 0), then wait for call ``index + 1``."""

    sandbox_id: SandboxId
    index: int = Field(ge=0)
    response_payload: str | None = Field(default=None, max_length=64 << 20)
    call_timeout: float = Field(default=600, gt=0, le=86400)
    _numbers = numbers_only("index", "call_timeout")


class EndpointInfo(BaseModel):
    """A sandbox's model endpoint: its mode (local, proxy or replay), where it listens inside the sandbox,
    ``state`` (serving or stopped), how many calls it has seen, and whether its session ended and why."""

    sandbox_id: str
    type: str
    mode: str
    port: int
    base_url: str = Field(description="the endpoint's URL inside the sandbox, for OPENAI_BASE_URL")
    state: str
    calls: int
    ended: bool
    end_reason: str | None = None
