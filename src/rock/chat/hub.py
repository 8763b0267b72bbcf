"""The admin's side of every sandbox's model endpoint: calls wait here, not in files.

A call made inside a sandbox arrives as an event on the endpoint's agent channel. In ``local``
mode it joins its owner's queue until a trainer takes it (``exchange``: answers in, next calls
out, one round trip each way, for any number of sandboxes) or ROCK's ``anti_call_llm`` takes it
by index; past ``call_timeout`` the sandbox's client gets a 504 that says so. ``proxy`` mode
forwards it upstream, ``replay`` serves recorded answers (see ``upstream.py``). Every call is
recorded here, outside the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from pathlib import Path

from rock.actions.chat import Answer, ModelEndpointConfig, Rejected
from rock.chat.completion import normalize
from rock.chat.endpoint import Call, Endpoint  # noqa: F401 - the routes import them from here too
from rock.chat.records import RecordLog
from rock.chat.upstream import Upstreams
from rock.chat import native
from rock.config import ChatSettings
from rock.errors import BadRequest, CommandTimeout, Conflict, SandboxNotFound
from rock.worker.protocol import WorkerListener

log = logging.getLogger("rock.admin.chat")
SESSION_END = "SESSION_END"


class ChatHub(WorkerListener):
    """Every sandbox's model endpoint and the trainers' queue of held calls, with what ``settings``
    (``Settings.chat``) says: the upstreams proxy mode may forward to, and what is kept in memory."""

    def __init__(self, state_dir: Path, sandboxes=None, settings: ChatSettings | None = None, open_proxy: bool = True):
        self.sandboxes = sandboxes
        self.settings = settings = settings or ChatSettings()
        self.proxy_urls = [u.rstrip("/") for u in settings.proxy_urls]
        # Without tokens the admin serves its operator alone (on loopback): any upstream they name.
        self.open_proxy = open_proxy
        self.endpoints: dict[str, Endpoint] = {}
        self.queues: dict[str | None, deque[Call]] = {}
        # owner -> each waiting trainer's future and the sandboxes it takes calls of (None: all)
        self.waiters: dict[str | None, dict[asyncio.Future, set[str] | None]] = {}
        self.ended_since: dict[str | None, list[str]] = {}
        self.log = RecordLog(state_dir / "chat")
        self.upstreams = Upstreams()  # proxy mode's connections to its upstreams
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def get(self, sandbox_id: str, owner: str | None) -> Endpoint:
        ep = self.endpoints.get(sandbox_id)
        if ep is None or ep.owner != owner:
            raise SandboxNotFound(f"sandbox {sandbox_id} has no model endpoint; start one first "
                                  "(POST /apis/v1/chat/start or sandbox.model_service.start())")
        return ep

    def touch(self, sandbox_id: str) -> None:
        record = self.sandboxes.records.get(sandbox_id) if self.sandboxes is not None else None
        if record is not None:
            self.sandboxes.touch(record)  # a model call is a use: it refreshes the idle TTL

    async def start(self, agent, sandbox_id: str, owner: str | None, config: ModelEndpointConfig,
                    from_sandbox: bool = False) -> Endpoint:
        url = config.proxy_base_url
        if url is not None and url.rstrip("/") not in self.proxy_urls \
                and (self.proxy_urls or from_sandbox or not self.open_proxy):
            # The admin connects to the upstream on the caller's behalf and hands its answers back:
            # an unlisted URL would let a token holder (or code in a sandbox) reach any address the
            # admin's host can, its loopback services included.
            where = ("named from inside a sandbox" if from_sandbox else
                     "named by a token holder" if not self.open_proxy else "named")
            raise BadRequest(f"proxy_base_url {url} is not one of the upstreams this admin forwards to when "
                             f"{where}: the operator lists them in chat_proxy_urls (chat.proxy_urls, ROCK_CHAT_PROXY_URLS, a JSON "
                             f"list; now {self.proxy_urls})")
        old = self.endpoints.get(sandbox_id)
        if old is not None and old.channel is not None:
            raise Conflict(f"sandbox {sandbox_id} already serves a model endpoint on port {old.port}; stop it first")
        ep = Endpoint(self, sandbox_id, owner, config)
        args = {"port": config.port, "host": config.host, "models": config.models,
                "max_body_bytes": config.limits.max_body_bytes}
        ep.channel = agent.open_channel("chat.serve", args, ep.on_event)
        ep.channel.done.add_done_callback(lambda f: ep.closed(_end_reason(f)))
        self.endpoints[sandbox_id] = ep
        await ep.listening
        log.info("sandbox %s: model endpoint (%s) on port %s", sandbox_id, ep.mode, ep.port)
        return ep

    async def stop(self, sandbox_id: str, owner: str | None) -> Endpoint:
        """End the endpoint and return once the agent has closed its port (so it can start again)."""
        ep = self.get(sandbox_id, owner)
        channel = ep.channel
        if channel is not None:
            channel.close()
            await asyncio.wait({channel.done}, timeout=30)
        return ep

    # -- local mode: the trainer's queue ---------------------------------------------------

    def enqueue(self, call: Call) -> None:
        owner = call.endpoint.owner
        self.queues.setdefault(owner, deque()).append(call)
        self._wake(owner, call.endpoint.sandbox_id)

    def ended(self, ep: Endpoint) -> None:
        notices = self.ended_since.setdefault(ep.owner, [])
        notices.append(ep.sandbox_id)
        del notices[:-self.settings.keep_notices]
        self._wake(ep.owner, ep.sandbox_id)

    def evict_ended(self) -> None:
        """Forget the oldest ended endpoints past the last ``settings.keep_ended`` (their records are on disk)."""
        gone = [sid for sid, e in self.endpoints.items() if e.channel is None]
        for sid in gone[:max(0, len(gone) - self.settings.keep_ended)]:
            del self.endpoints[sid]

    def _wake(self, owner: str | None, sandbox_id: str) -> None:
        """Wake the owner's trainers that take ``sandbox_id``'s calls, and only those: a trainer
        split over several connections (each with its own sandboxes) would otherwise wake on
        every connection for every call, to find nothing and wait again."""
        waiters = self.waiters.get(owner)
        if not waiters:
            return
        for waiter, only in list(waiters.items()):
            if only is None or sandbox_id in only:
                del waiters[waiter]
                if not waiter.done():
                    waiter.set_result(None)

    def answer(self, owner: str | None, a: Answer, via: str = "trainer") -> Rejected | None:
        ep = self.endpoints.get(a.sandbox_id)
        if ep is None or ep.owner != owner:
            return Rejected(sandbox_id=a.sandbox_id, index=a.index, status=404,
                            reason=f"sandbox {a.sandbox_id} has no model endpoint")
        call = ep.calls.get(a.index)
        if call is None:
            return Rejected(sandbox_id=a.sandbox_id, index=a.index, status=404,
                            reason=f"sandbox {a.sandbox_id} made no call {a.index} (it has made {len(ep.calls)})")
        if ep.mode != "local":
            return Rejected(sandbox_id=a.sandbox_id, index=a.index, status=409,
                            reason=f"call {a.index} is served in {ep.mode} mode, not by the trainer")
        if call.state not in ("waiting", "taken"):
            why = "was answered already" if call.state == "answered" else f"ended: {call.record.error}"
            return Rejected(sandbox_id=a.sandbox_id, index=a.index, status=409, reason=f"call {a.index} {why}")
        call.record.answered_via = via  # type: ignore[assignment]
        if a.error is not None:
            ep.fail(call, a.error.status, a.error.message)
            return None
        if call.native is not None:  # a Messages or Responses call: the answer in either form
            try:
                obj, completion = native.outbound(call, a.response)
            except ValueError as exc:
                return Rejected(sandbox_id=a.sandbox_id, index=a.index, status=400,
                                reason=f"the answer to call {a.index} ({call.native['api']}) is neither a chat "
                                       f"completion nor a valid native object: {exc}")
            ep.complete_native(call, obj, completion)
            return None
        try:
            response = normalize(a.response, call)
        except ValueError as exc:
            return Rejected(sandbox_id=a.sandbox_id, index=a.index, status=400,
                            reason=f"the answer to call {a.index} is not a chat completion: {exc}")
        ep.complete(call, response)
        return None

    def take(self, owner: str | None, limit: int, only: set[str] | None) -> list[Call]:
        queue = self.queues.get(owner)
        out: list[Call] = []
        if not queue or limit <= 0:
            return out
        kept: deque[Call] = deque()
        while queue and len(out) < limit:
            call = queue.popleft()
            if call.state != "waiting":
                continue  # taken by anti_call_llm, or timed out
            if only is not None and call.endpoint.sandbox_id not in only:
                kept.append(call)
                continue
            call.state = "taken"
            out.append(call)
        queue.extendleft(reversed(kept))
        return out

    async def exchange(self, owner: str | None, answers: list[Answer], limit: int, wait: float,
                       only: list[str] | None) -> tuple[list[dict], list[str], list[Rejected]]:
        rejected = [r for a in answers if (r := self.answer(owner, a)) is not None]
        calls, ended = await self.next_calls(owner, limit, set(only) if only is not None else None, wait)
        return calls, ended, rejected

    async def next_calls(self, owner: str | None, limit: int, only: set[str] | None,
                         wait: float | None) -> tuple[list[dict], list[str]]:
        """Up to ``limit`` pending calls (and the sessions ended meanwhile), waiting up to ``wait``
        seconds (None: until there are some) for a first one."""
        calls, ended = await self.next_call_objects(owner, limit, only, wait)
        return [c.pending() for c in calls], ended

    async def next_call_objects(self, owner: str | None, limit: int, only: set[str] | None,
                                wait: float | None) -> tuple[list[Call], list[str]]:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            calls = self.take(owner, limit, only)
            ended = self._ended(owner, only)
            left = None if deadline is None else deadline - time.monotonic()
            if calls or ended or (left is not None and left <= 0) or limit == 0:
                return calls, ended
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.setdefault(owner, {})[waiter] = only
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                pass
            finally:
                self.waiters.get(owner, {}).pop(waiter, None)

    def _ended(self, owner: str | None, only: set[str] | None) -> list[str]:
        ended = self.ended_since.get(owner)
        if not ended:
            return []
        if only is None:
            self.ended_since[owner] = []
            return ended
        mine = [s for s in ended if s in only]
        self.ended_since[owner] = [s for s in ended if s not in only]
        return mine

    # -- ROCK's anti_call_llm --------------------------------------------------------------

    async def anti_call(self, owner: str | None, sandbox_id: str, index: int, payload: str | None,
                        timeout: float, via: str = "trainer") -> str:
        ep = self.get(sandbox_id, owner)
        if ep.mode != "local":
            raise Conflict(f"anti_call_llm drives local mode; sandbox {sandbox_id}'s endpoint is in {ep.mode} mode")
        if index == 0:
            if payload is not None:
                raise BadRequest("index 0 asks for the first request and takes no response_payload")
        else:
            if payload is None:
                raise BadRequest(f"index {index} needs response_payload: the answer to call {index}")
            if index < ep.answered_max:
                raise BadRequest(f"index {index} is below the last answered index {ep.answered_max}")
            if index > ep.answered_max:
                try:
                    response = json.loads(payload)
                except ValueError as exc:
                    raise BadRequest(f"response_payload is not JSON: {exc}") from None
                if not isinstance(response, dict):
                    raise BadRequest("response_payload must be a JSON object (a chat completion)")
                rejected = self.answer(owner, Answer(sandbox_id=sandbox_id, index=index, response=response), via)
                if rejected is not None:
                    raise (BadRequest if rejected.status == 400 else Conflict)(rejected.reason)
        return await self.next_request(ep, index + 1, timeout)

    async def next_request(self, ep: Endpoint, index: int, timeout: float) -> str:
        call = ep.calls.get(index)
        if call is None:
            if ep.ended:
                return SESSION_END
            waiter = asyncio.get_running_loop().create_future()
            ep.arrivals.setdefault(index, []).append(waiter)
            try:
                call = await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                raise CommandTimeout(f"sandbox {ep.sandbox_id} made no call {index} within {timeout:g}s") from None
            if call is None:
                return SESSION_END
        if call.state == "waiting":
            call.state = "taken"
        return json.dumps(call.request, ensure_ascii=False)

    def agent_notice(self, sandbox_id: str, meta: dict, body: bytes) -> None:
        """A request from ``rock model-service ...`` run inside the sandbox (see sandbox_cli.py)."""
        if meta.get("event") == "chat.cli":
            from rock.chat.sandbox_cli import handle

            self.spawn(handle(self, sandbox_id, meta, body))

    async def close(self) -> None:
        for ep in list(self.endpoints.values()):
            if ep.channel is not None:
                ep.channel.close()
        for task in list(self._tasks):
            task.cancel()
        await self.upstreams.aclose()
        await self.log.close()


def _end_reason(future: asyncio.Future) -> str:
    if future.cancelled():
        return "the model endpoint was cancelled"
    exc = future.exception()
    if exc is not None:
        return getattr(exc, "message", None) or str(exc)
    return "the model endpoint was stopped"
