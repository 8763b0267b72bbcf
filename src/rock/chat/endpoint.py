"""One sandbox's model endpoint as the admin holds it (``Endpoint``): its calls (``Call``), as
they arrive over the agent channel, wait, and are answered, failed or expired; its limits (calls,
body size, wall time); its end. ``ChatHub`` (``hub.py``) keeps the endpoints and the trainers'
queues."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from rock.actions.chat import ModelEndpointConfig
from rock.chat import upstream
from rock.actions.records import CallRecord
from rock.chat import native
from rock.errors import Conflict, RockError
from rock.jsonutil import dumps as dumps_bytes, loads as loads_fast

if TYPE_CHECKING:
    from rock.chat.hub import ChatHub

log = logging.getLogger("rock.admin.chat")


class Call:
    __slots__ = ("endpoint", "index", "request", "raw", "text", "record", "state", "native")

    def __init__(self, endpoint: "Endpoint", index: int, request: dict, raw: bytes, text: str | None,
                 record: CallRecord):
        self.endpoint, self.index, self.request, self.record = endpoint, index, request, record
        self.raw = raw  # the body as the sandbox's client sent it (proxy mode forwards it unchanged)
        self.text = text  # the same, decoded, where it parsed as one JSON object (else None)
        self.state = "waiting"  # -> taken -> answered | expired
        self.native: dict | None = None  # {"api", "request"} of a Messages or Responses call (see agentic/native.py)

    def pending(self) -> dict:
        """A PendingCall, as the dict the route sends."""
        if self.native is not None:
            return {"sandbox_id": self.endpoint.sandbox_id, "index": self.index, "request": self.request,
                    "native": self.native}
        return {"sandbox_id": self.endpoint.sandbox_id, "index": self.index, "request": self.request}


class Endpoint:
    def __init__(self, hub: "ChatHub", sandbox_id: str, owner: str | None, config: ModelEndpointConfig):
        self.hub, self.sandbox_id, self.owner, self.config = hub, sandbox_id, owner, config
        self.mode = "replay" if config.replay is not None else config.type
        self.channel = None
        self.port: int | None = None
        self.listening: asyncio.Future = asyncio.get_running_loop().create_future()
        self.calls: dict[int, Call] = {}
        self.records: list[CallRecord] = []
        self.answered_max = 0  # ROCK's "last response index"
        self.arrivals: dict[int, list[asyncio.Future]] = {}  # index -> waiters for that call
        self.ended = False
        self.end_reason: str | None = None
        self.started_at = time.time()
        self.replay = deque(config.replay or ())
        self.conversations = native.Conversations(hub.settings.keep_responses)  # Responses' ids, for previous_response_id
        self.deadline: asyncio.TimerHandle | None = None
        # Local-mode calls in arrival order with the time each expires. The timeout is the same for
        # every call of an endpoint, so the order is also that of their deadlines: one timer, for
        # the oldest, instead of a timer made and cancelled per call.
        self.expiring: deque[tuple[float, Call]] = deque()
        self.expiry: asyncio.TimerHandle | None = None
        if config.limits.max_seconds is not None:
            self.deadline = asyncio.get_running_loop().call_later(config.limits.max_seconds, self.time_up)

    # -- events from the agent (run inside the protocol callback: no awaiting) ---------------

    def on_event(self, meta: dict, body: bytes) -> None:
        name = meta.get("event")
        if name == "call":
            self._arrived(meta["index"], body, bool(meta.get("stream")), meta.get("api"))
        elif name == "listening":
            self.port = meta.get("port")
            if not self.listening.done():
                self.listening.set_result(self.port)
        elif name == "session_end":
            self.end(f"the watched process {meta.get('pid')} exited")

    def _arrived(self, index: int, body: bytes, stream: bool, api: str | None = None) -> None:
        text: str | None = None
        try:
            request = loads_fast(body)  # orjson where present: a long conversation parses several times faster
            text = body.decode()
        except ValueError:  # what orjson refuses and json takes (NaN, integers past 64 bits); UnicodeDecodeError
            try:
                text = body.decode()
                request = json.loads(text)
            except ValueError:
                request = None
        if not isinstance(request, dict):
            text, request = None, {"_unparsed": body.decode(errors="replace")}
        malformed = nat = None
        if api in ("messages", "responses"):  # the trainer sees the chat form, the native request beside it
            nat = {"api": api, "request": request}
            try:
                request = native.inbound(api, request, self.conversations)
            except ValueError as exc:
                malformed = f"malformed {api} request: {exc}"
                request = {"messages": [], "model": request.get("model")}
            text = None  # the chat form is not the body the client sent
        record = CallRecord.begin(sandbox_id=self.sandbox_id, index=index, mode=self.mode, model=request.get("model"),
                                  stream=stream, start_time=time.time(), request=request,
                                  **({"native": dict(nat)} if nat is not None else {}))
        call = Call(self, index, request, body, text, record)
        call.native = nat
        self.calls[index] = call
        self.records.append(record)
        self.hub.touch(self.sandbox_id)
        refusal = self._over_limit(index)
        if malformed is not None:
            self.fail(call, 400, malformed)
        elif refusal:
            self.fail(call, 429, refusal)
        elif self.mode == "local":
            self.expiring.append((time.monotonic() + self.config.call_timeout, call))
            if self.expiry is None:
                self._arm()
            self.hub.enqueue(call)
        else:
            self.hub.spawn(upstream.serve(self, call))
        for waiter in self.arrivals.pop(index, ()):
            if not waiter.done():
                waiter.set_result(call)

    def _over_limit(self, index: int) -> str | None:
        limits = self.config.limits
        if limits.max_calls is not None and index > limits.max_calls:
            return f"this session's limit of {limits.max_calls} model calls is reached"
        if limits.max_seconds is not None and time.time() - self.started_at > limits.max_seconds:
            return f"this session's wall-time limit of {limits.max_seconds:g}s is reached"
        if self.ended:
            return f"the session has ended ({self.end_reason})"
        return None

    def time_up(self) -> None:
        """The wall time is spent: the session ends (a waiting trainer gets SESSION_END) and the
        calls the trainer still holds fail with the reason; later calls are refused with it."""
        if self.ended:
            return
        reason = f"this session's wall-time limit of {self.config.limits.max_seconds:g}s is reached"
        if self.mode == "local":  # proxy and replay calls end on their own (the upstream's timeout)
            for call in list(self.calls.values()):
                if call.state in ("waiting", "taken"):
                    self.fail(call, 429, reason, status="timeout")
        self.end(reason)

    def _drop_settled(self) -> None:
        """Calls answered or failed leave the head of ``expiring``; answered in order, as they mostly
        are, the queue stays short."""
        while self.expiring and self.expiring[0][1].state not in ("waiting", "taken"):
            self.expiring.popleft()

    def _arm(self) -> None:
        """Time the oldest call that may still expire."""
        self._drop_settled()
        self.expiry = None
        if self.expiring:
            self.expiry = asyncio.get_running_loop().call_later(max(0.0, self.expiring[0][0] - time.monotonic()),
                                                                self._expire_due)

    def _expire_due(self) -> None:
        now = time.monotonic()
        while self.expiring and self.expiring[0][0] <= now:
            call = self.expiring.popleft()[1]
            if call.state in ("waiting", "taken"):
                self.fail(call, 504, f"no answer from the trainer within {self.config.call_timeout:g}s "
                                     f"(call {call.index} of sandbox {self.sandbox_id}); is the trainer running?",
                          status="timeout")
        self._arm()

    # -- answering -------------------------------------------------------------------------

    def _send(self, meta: dict, payload: bytes) -> None:
        if self.channel is not None:
            try:
                self.channel.send(dumps_bytes(meta) + b"\n" + payload)
            except RockError as exc:  # the agent is gone; the channel's end reports it
                log.debug("sandbox %s: answer %s not delivered: %s", self.sandbox_id, meta.get("index"), exc)

    def deliver(self, call: Call, kind: str, status: int, payload: bytes) -> None:
        """Send ``call``'s whole answer to the sandbox's agent as is (``kind``: json or error, with its
        HTTP ``status``) and settle the call; its record is finished by the caller first."""
        self._send({"index": call.index, "kind": kind, "status": status}, payload)
        self.settle(call)

    def settle(self, call: Call) -> None:
        """The call is over: answered, or expired by its record's status (no expiry timer waits on
        it any more), and its record goes to the log. After ``deliver``, or a stream's last part."""
        call.state = "answered" if call.record.status == "success" else "expired"
        if call.index > self.answered_max:
            self.answered_max = call.index
        self._drop_settled()
        self.hub.log.add(call.record)

    def complete(self, call: Call, response: dict) -> None:
        """A whole completion: the agent serves it as JSON or as the stream its client asked for."""
        call.record.finish("success", 200, response)
        self.deliver(call, "json", 200, dumps_bytes(response))

    def complete_native(self, call: Call, native_response: dict, completion: dict) -> None:
        """A Messages or Responses call's answer: ``native_response`` to the harness, both forms recorded."""
        call.record.finish("success", 200, completion)
        call.record.native["response"] = native_response
        native.remember(call, native_response, completion)
        self.deliver(call, "json", 200, dumps_bytes(native_response))

    def fail(self, call: Call, http_status: int, message: str, status: str = "failure") -> None:
        call.record.finish(status, http_status, error=message)
        call.record.answered_via = call.record.answered_via or "admin"
        body = native.error_body(call.native and call.native["api"], http_status, message)
        self.deliver(call, "error", http_status, body)

    def stream_part(self, call: Call, status: int, data: bytes, final: bool) -> None:
        self._send({"index": call.index, "kind": "sse", "status": status, "final": final}, data)

    def watch(self, pid: int) -> None:
        self._send({"kind": "watch", "pid": pid}, b"")

    # -- the end -----------------------------------------------------------------------------

    def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended, self.end_reason = True, reason
        if self.deadline is not None:
            self.deadline.cancel()
        log.info("sandbox %s: model session ended: %s", self.sandbox_id, reason)
        for waiters in self.arrivals.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self.arrivals.clear()
        self.hub.ended(self)

    def closed(self, reason: str) -> None:
        """The channel ended (stopped, or the sandbox went away): nothing waits on it any more."""
        self.channel = None
        if not self.listening.done():
            self.listening.set_exception(Conflict(f"the model endpoint of sandbox {self.sandbox_id} did not start: {reason}"))
        for call in list(self.calls.values()):
            if call.state in ("waiting", "taken"):
                call.record.finish("failure", 503, error=reason)
                self.settle(call)
        self.end(reason)
        self.hub.evict_ended()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
