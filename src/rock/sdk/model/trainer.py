"""The trainer's side of the Chat protocol, fast: answer model calls from many sandboxes.

One ``ChatTrainer`` holds one keep-alive connection to the admin. ``exchange`` sends the answers
it has and takes the next pending calls of all its sandboxes in the same round trip, so a trainer
driving a thousand rollouts runs one loop, not a thousand. ``serve(policy)`` is that loop.

    trainer = ChatTrainer(base_url)
    await trainer.start(sandbox.sandbox_id)           # the endpoint inside: http://127.0.0.1:8080/v1
    ...                                               # the agent inside calls it
    await trainer.serve(policy, sandbox_ids=[sandbox.sandbox_id])   # until its session ends
    records = await trainer.trajectory(sandbox.sandbox_id)

``SyncChatTrainer`` is the same without ``await``.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, TypeVar

from rock.actions.chat import EndpointInfo, ExchangeResult, PendingCall
from rock.actions.records import CallRecord
from rock.sdk.background import run_sync
from rock.sdk.closing import AsyncClosing, Closing
from rock.client.config import ClientConfig
from rock.client.http import Http
from rock.jsonutil import dumps, loads

if TYPE_CHECKING:
    import httpx

PREFIX = "/apis/v1/chat"
Policy = Callable[[PendingCall], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class ChatTrainer(AsyncClosing):
    """The trainer's side of the Chat protocol over one kept-alive connection (see the module's docstring): start
    endpoints, answer their calls, read their records. ``transport``: an ``httpx.AsyncBaseTransport``
    that carries every call instead of ROCK's own (as ``httpx.AsyncClient`` takes one)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, headers: dict[str, str] | None = None,
                 request_timeout: float | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        config = ClientConfig.resolve(base_url, token, headers, request_timeout)
        self.base_url = config.base_url
        self._http = Http(self.base_url, config.all_headers(), request_timeout, prefix=PREFIX, transport=transport)

    @classmethod
    def for_sandbox(cls, sandbox: Any) -> "ChatTrainer":
        """A trainer speaking for the same namespace and token as ``sandbox`` (an SDK Sandbox)."""
        sb = getattr(sandbox, "_sandbox", sandbox)  # SyncSandbox wraps one
        return cls(sb.config.base_url, headers=sb.config.headers(), request_timeout=sb.config.request_timeout)

    # -- the endpoint ----------------------------------------------------------------------

    async def start(self, sandbox_id: str, **config: Any) -> EndpointInfo:
        """Serve the model endpoint inside ``sandbox_id``; ``config``: ModelEndpointConfig's fields
        (type, port, proxy_base_url, replay, call_timeout, limits, ...)."""
        return EndpointInfo.model_validate(await self._http.post("/start", {"sandbox_id": sandbox_id, **config}))

    async def stop(self, sandbox_id: str) -> EndpointInfo:
        """Stop the model endpoint inside ``sandbox_id`` (its records stay)."""
        return EndpointInfo.model_validate(await self._http.post("/stop", {"sandbox_id": sandbox_id}))

    async def status(self, sandbox_id: str) -> EndpointInfo:
        """The state of the model endpoint inside ``sandbox_id``."""
        return EndpointInfo.model_validate(await self._http.get("/status", {"sandbox_id": sandbox_id}))

    async def watch(self, sandbox_id: str, pid: int) -> None:
        """End the endpoint's session when process ``pid`` in the sandbox (the agent) exits."""
        await self._http.post("/watch", {"sandbox_id": sandbox_id, "pid": pid})

    # -- answering -------------------------------------------------------------------------

    async def exchange(self, answers: Iterable[dict[str, Any]] = (), max_calls: int = 256, wait: float = 10,
                       sandbox_ids: list[str] | None = None) -> ExchangeResult:
        """Deliver ``answers`` ({sandbox_id, index, response | error}) and take up to ``max_calls``
        pending calls, waiting up to ``wait`` seconds for a first one."""
        body = {"answers": list(answers), "max_calls": max_calls, "wait": wait, "sandbox_ids": sandbox_ids}
        timeout = None if self._http.read_timeout is None else self._http.read_timeout + wait
        return ExchangeResult.model_validate(await self._http.post("/exchange", body, timeout=timeout))

    async def answer(self, sandbox_id: str, index: int, response: dict[str, Any] | None = None,
                     error: dict[str, Any] | None = None) -> None:
        """One answer; raises with the reason when the call is unknown, answered or timed out."""
        await self._http.post("/answer", {"sandbox_id": sandbox_id, "index": index, "response": response,
                                          "error": error})

    async def serve(self, policy: Policy, sandbox_ids: list[str] | None = None, max_calls: int = 256,
                    wait: float = 10, until: Callable[[], bool] | None = None, concurrency: int = 1,
                    websocket: bool = False) -> int:
        """Answer calls with ``policy(call) -> completion`` (sync or async) until every sandbox in
        ``sandbox_ids`` has ended its session (or ``until()`` is true). Returns the calls answered.
        ``concurrency`` exchanges in flight at once keep many sandboxes busy (each call goes to one);
        ``websocket``: one WebSocket instead, calls pushed as they arrive, answers as messages."""
        if websocket:
            return await self._serve_ws(policy, sandbox_ids, max_calls, wait, until)
        waiting = set(sandbox_ids or ())
        counts = [0]

        async def loop() -> None:
            answers: list[dict[str, Any]] = []
            while True:
                result = await self.exchange(answers, max_calls, wait, sandbox_ids)
                counts[0] += len(answers) - len(result.rejected)
                waiting.difference_update(result.ended)
                answers = []
                if result.calls:
                    replies = [policy(call) for call in result.calls]
                    if any(inspect.isawaitable(r) for r in replies):
                        replies = await asyncio.gather(*(r if inspect.isawaitable(r) else _ready(r) for r in replies))
                    answers = [{"sandbox_id": c.sandbox_id, "index": c.index, "response": r}
                               for c, r in zip(result.calls, replies)]
                elif (sandbox_ids is not None and not waiting) or (until is not None and until()):
                    return

        await asyncio.gather(*(loop() for _ in range(max(1, concurrency))))
        return counts[0]

    async def _serve_ws(self, policy: Policy, sandbox_ids: list[str] | None, max_calls: int, wait: float,
                        until: Callable[[], bool] | None) -> int:
        """One WebSocket for every sandbox. A sync policy's answers to one message's calls leave as
        one message; an async policy's calls run side by side and their answers leave together as
        they finish (those ready in the same loop turn share a message), so a slow call holds up
        no other. No compression: these are small JSON messages on loopback or a LAN, where
        deflate costs more CPU on both sides than the bytes it saves. Messages are encoded and
        parsed with ``rock.jsonutil`` (orjson): with the stdlib's json, encoding and parsing were
        about a fifth of this loop's own CPU."""
        from websockets.asyncio.client import connect

        from rock.client.envelope import error_from

        url = "ws" + self.base_url.rstrip("/")[4:] + PREFIX + "/ws"
        waiting, done = set(sandbox_ids or ()), 0
        outbox: list[dict[str, Any]] = []
        running: set[asyncio.Task[None]] = set()
        failures: list[Exception] = []  # of an async policy's calls, or of sending their answers
        flushing = False
        loop = asyncio.get_running_loop()
        async with connect(url, additional_headers=self._http.headers, max_size=None, compression=None) as ws:
            inbox = _Inbox(ws, wait)

            async def flush() -> None:
                nonlocal flushing, done
                flushing = False
                if outbox:
                    batch = outbox[:]
                    outbox.clear()
                    try:
                        await ws.send(dumps({"type": "answers", "answers": batch}).decode())  # text frames
                    except Exception as exc:  # noqa: BLE001 - raised from serve()
                        failures.append(exc)
                        inbox.wake()
                        return
                    done += len(batch)

            async def ask(call: PendingCall, pending: Awaitable[dict[str, Any]]) -> None:
                nonlocal flushing
                try:
                    reply = await pending
                except Exception as exc:  # noqa: BLE001 - raised from serve(), as a sync policy's would be
                    failures.append(exc)
                    inbox.wake()
                    return
                outbox.append({"sandbox_id": call.sandbox_id, "index": call.index, "response": reply})
                if not flushing:  # once per loop turn, after every answer ready in it: sent from this
                    flushing = True  # task, one turn on (no task of its own per message)
                    await asyncio.sleep(0)
                    await flush()

            await ws.send(dumps({"type": "subscribe", "sandbox_ids": sandbox_ids, "max_calls": max_calls}).decode())
            try:
                while not ((sandbox_ids is not None and not waiting) or (until is not None and until())):
                    if failures:
                        raise failures[0]
                    try:
                        msg = loads(await inbox.next())
                    except (TimeoutError, asyncio.TimeoutError):
                        continue
                    if msg["type"] == "error":
                        raise error_from(msg.get("status_code", 500), {"message": msg.get("message"),
                                                                       "result": {"error_type": msg.get("error_type")}})
                    if msg["type"] == "rejected":
                        done -= len(msg["rejected"])
                        continue
                    for c in msg["calls"]:
                        # Built by the admin from its own records: no second validation here.
                        call = PendingCall.model_construct(sandbox_id=c["sandbox_id"], index=c["index"],
                                                           request=c["request"], native=c.get("native"))
                        reply = policy(call)
                        if inspect.isawaitable(reply):
                            _keep(running, loop.create_task(ask(call, reply)))
                        else:
                            outbox.append({"sandbox_id": call.sandbox_id, "index": call.index, "response": reply})
                    if outbox and not flushing:
                        await flush()
                    waiting.difference_update(msg["ended"])
                while running:  # answers still being made or sent when the last session ended
                    await asyncio.wait(set(running))
            finally:
                for task in running:
                    task.cancel()
            if failures:
                raise failures[0]
        return done

    # -- ROCK's index protocol and the records ----------------------------------------------

    async def anti_call_llm(self, sandbox_id: str, index: int, response_payload: str | None = None,
                            call_timeout: float = 600) -> str:
        """ROCK's ``anti_call_llm`` (local mode): give call ``index`` its answer (``response_payload``; none for
        index 0) and wait up to ``call_timeout`` for the next call's request."""
        body = {"sandbox_id": sandbox_id, "index": index, "response_payload": response_payload,
                "call_timeout": call_timeout}
        request: str = await self._http.post("/anti_call_llm", body, timeout=call_timeout + 30)
        return request

    async def trajectory(self, sandbox_id: str) -> list[CallRecord]:
        """The sandbox's model-call records, in order."""
        rows = await self._http.get("/trajectory", {"sandbox_id": sandbox_id})
        return [CallRecord.model_validate(r) for r in rows]

    async def trajectory_jsonl(self, sandbox_id: str) -> str:
        """The records as ROCK's trajectory JSONL (a replay file for ``replay=``)."""
        r = await self._http.raw_get("/trajectory", {"sandbox_id": sandbox_id, "format": "rock"})
        return r.text

    async def aclose(self) -> None:
        """Close the connection (the endpoints keep serving)."""
        await self._http.aclose()


_T = TypeVar("_T")


async def _ready(value: _T) -> _T:
    return value


def _keep(tasks: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
    """Hold a reference to ``task`` until it ends (the loop keeps only weak ones)."""
    tasks.add(task)
    task.add_done_callback(tasks.discard)


class _Inbox:
    """A WebSocket's next message with a deadline (``wait`` seconds) that ``wake()`` ends at once:
    a failure elsewhere in serve's loop (an async policy's call that raised) is raised now, not
    when the next message or the deadline comes, while every sandbox of the loop waits."""

    def __init__(self, ws: Any, wait: float) -> None:
        self.ws, self.wait = ws, wait
        self._deadline: Any = None  # the asyncio.timeout of the recv in progress (3.11+)
        self._woken = False  # a wake that came while no recv was in progress

    async def next(self) -> Any:
        """The next message; TimeoutError after ``wait`` seconds or once woken."""
        if self._woken:
            self._woken = False
            raise TimeoutError("woken")
        if sys.version_info < (3, 11):  # no reschedulable timeout: a wake waits for the deadline
            return await asyncio.wait_for(self.ws.recv(), self.wait)
        async with asyncio.timeout(self.wait) as self._deadline:  # no task per message (wait_for makes one)
            try:
                return await self.ws.recv()  # cancelling websockets' recv loses no message
            finally:
                self._deadline = None

    def wake(self) -> None:
        """End the wait in progress (or the next one) with TimeoutError."""
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time())
        else:
            self._woken = True


class SyncChatTrainer(Closing):
    """``ChatTrainer`` without ``await`` (its calls run on the SDK's background loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._trainer = ChatTrainer(*args, **kwargs)

    @classmethod
    def for_sandbox(cls, sandbox: Any) -> "SyncChatTrainer":
        """A trainer speaking for the same namespace and token as ``sandbox``."""
        out = cls.__new__(cls)
        out._trainer = ChatTrainer.for_sandbox(sandbox)
        return out

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trainer, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *a, **k: run_sync(attr(*a, **k))

    def close(self) -> None:
        """Close the connection (the endpoints keep serving)."""
        run_sync(self._trainer.aclose())

