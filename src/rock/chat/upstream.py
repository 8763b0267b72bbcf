"""Proxy and replay modes.

Proxy: the call's body goes unchanged to ``<proxy_base_url>/chat/completions`` (sampling fields
and any token-id/logprob options included), retried like ROCK on connection errors and the
retryable statuses with a doubling back-off; the upstream's answer comes back unchanged
(a stream passes through as it arrives) and the record keeps the folded completion with the
engine's token ids and logprobs. Replay: ROCK's recorded answers in order, 404 past the end.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from typing import TYPE_CHECKING

import httpx

from rock.chat.native import NativeStreamFold
from rock.chat.stream import StreamFold

if TYPE_CHECKING:
    from rock.chat.hub import Call, Endpoint

log = logging.getLogger("rock.admin.chat")


class Upstreams:
    """One admin's pooled client for every proxied call (keep-alive to the inference server), on
    the SDK's lean transport: httpx's default one costs ~4 ms a request on this VM, this one
    ~0.3 ms (https goes to httpx's own). The hub holds it and closes it when the admin stops: its
    connections belong to the admin's event loop, and a process may run one admin after another."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self.lean = None  # the client's transport (a LeanTransport)

    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            from rock.sdk.transport import LeanTransport

            self.lean = LeanTransport(max_idle_per_host=256)
            self._client = httpx.AsyncClient(timeout=None, transport=self.lean)
        return self._client

    async def post_whole(self, target: tuple[str, int, bytes], headers: dict[str, str], body: bytes,
                         timeout: float) -> tuple[int, bytes]:
        """POST ``body`` to a plain-http upstream and read its whole answer: one encoded request on
        the lean transport's pool, without httpx's Request and Response objects (most of what the
        admin spent on a proxied call)."""
        self.client()
        host, port, head = target
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        return await self.lean.request_bytes(host, port, head + b"content-length: %d\r\n\r\n" % len(body) + body,
                                             timeout, timeout)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@functools.lru_cache(maxsize=256)
def _plain_target(url: str) -> tuple[str, int, bytes] | None:
    """(host, port, request line and host header) of a plain ``http://`` URL, None for any other:
    worked out once per upstream, not per call."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or not parsed.host:
        return None
    port = parsed.port or 80
    netloc = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    if parsed.port is not None:
        netloc += f":{port}"
    return parsed.host, port, b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (parsed.raw_path, netloc.encode())


async def serve(ep: "Endpoint", call: "Call") -> None:
    try:
        if ep.mode == "replay":
            _replay(ep, call)
        else:
            await _forward(ep, call)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the sandbox's client gets an answer
        log.exception("sandbox %s: call %d failed in %s mode", ep.sandbox_id, call.index, ep.mode)
        if call.state in ("waiting", "taken"):
            ep.fail(call, 502, f"the model endpoint could not serve call {call.index}: {type(exc).__name__}: {exc}")


def _replay(ep: "Endpoint", call: "Call") -> None:
    total = len(ep.config.replay or ())
    if not ep.replay:
        ep.fail(call, 404, f"the replayed trajectory is exhausted: it has {total} recorded calls")
        return
    call.record.answered_via = "replay"
    response = ep.replay.popleft()["response"]
    if call.native is not None:  # a recorded chat completion or native object, served in the call's API
        from rock.chat import native

        try:
            obj, completion = native.outbound(call, response)
        except ValueError as exc:
            ep.fail(call, 502, f"the replayed answer to call {call.index} does not fit a {call.native['api']} "
                               f"call: {exc}")
            return
        ep.complete_native(call, obj, completion)
        return
    ep.complete(call, response)


async def _forward(ep: "Endpoint", call: "Call") -> None:
    cfg = ep.config
    api = call.native["api"] if call.native is not None else "chat"
    url = cfg.proxy_base_url + {"chat": "/chat/completions", "messages": "/messages", "responses": "/responses"}[api]
    body = call.raw  # every API is forwarded natively, unchanged
    delay = cfg.retry_delay
    headers = {"content-type": "application/json"}
    if api == "messages":
        headers["anthropic-version"] = "2023-06-01"
    if cfg.proxy_api_key:
        headers["authorization"] = f"Bearer {cfg.proxy_api_key}"
        if api == "messages":  # Anthropic's own servers read the key from x-api-key
            headers["x-api-key"] = cfg.proxy_api_key
    call.record.answered_via = "upstream"
    upstreams = ep.hub.upstreams
    # A call that does not stream is answered whole: to a plain-http upstream, without httpx's objects.
    target = None if call.record.stream else _plain_target(url)
    for attempt in range(1, cfg.retry_attempts + 1):
        call.record.attempts = attempt
        last = attempt == cfg.retry_attempts
        try:
            if target is not None:
                response, (status, raw) = None, await upstreams.post_whole(target, headers, body,
                                                                           cfg.request_timeout)
            else:
                client = upstreams.client()
                request = client.build_request("POST", url, content=body, headers=headers, timeout=cfg.request_timeout)
                response = await client.send(request, stream=True)
                status = response.status_code
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            if last:
                ep.fail(call, 502, f"the upstream {cfg.proxy_base_url} did not answer after {attempt} tries: "
                                   f"{type(exc).__name__}: {exc}")
                return
            log.warning("sandbox %s: call %d: upstream unreachable (try %d): %s", ep.sandbox_id, call.index, attempt, exc)
        else:
            if status in cfg.retryable_status_codes and not last:
                if response is not None:
                    await response.aclose()
                log.warning("sandbox %s: call %d: upstream answered %d (try %d); retrying", ep.sandbox_id, call.index,
                            status, attempt)
            elif response is None:
                _answer_whole(ep, call, status, raw)
                return
            else:
                await _relay(ep, call, response)
                return
        await asyncio.sleep(random.uniform(delay / 2, delay))
        delay *= 2


async def _relay(ep: "Endpoint", call: "Call", response: httpx.Response) -> None:
    status = response.status_code
    try:
        if "text/event-stream" in response.headers.get("content-type", ""):
            fold = _fold(call)
            # A short body with a length arrives whole (the transport reads it at once): relayed as one part.
            parts = response.aiter_bytes() if response.is_stream_consumed else response.aiter_raw()
            try:
                async for data in parts:
                    fold.feed(data)
                    ep.stream_part(call, status, data, False)
            except httpx.HTTPError as exc:
                ep.fail(call, 502, f"the upstream broke off its stream: {exc}")
                return
            ep.stream_part(call, status, b"", True)
            _streamed(ep, call, status, fold)
            return
        raw = await response.aread()
    finally:
        await response.aclose()
    _answer_whole(ep, call, status, raw)


def _fold(call: "Call") -> StreamFold | NativeStreamFold:
    return NativeStreamFold(call.native["api"]) if call.native is not None else StreamFold()


def _streamed(ep: "Endpoint", call: "Call", status: int, fold: StreamFold | NativeStreamFold) -> None:
    """A stream passed through to its end: its record, from the folded events."""
    ok = status < 400
    call.record.finish("success" if ok else "failure", status, fold.completion() if ok else None,
                       None if ok else f"upstream_status={status}")
    if call.native is not None and ok and fold.native() is not None:
        from rock.chat import native

        call.record.native["response"] = fold.native()
        native.remember(call, fold.native(), call.record.response)
    ep.settle(call)


def _answer_whole(ep: "Endpoint", call: "Call", status: int, raw: bytes) -> None:
    """The upstream's whole answer (``raw``, with its HTTP ``status``) to the call's client and its record."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if parsed is None and status < 400 and raw.lstrip().startswith((b"data:", b"event:")):
        # an event stream (read whole) answering a call that did not ask for one: passed through as one part
        fold = _fold(call)
        fold.feed(raw)
        ep.stream_part(call, status, raw, True)
        _streamed(ep, call, status, fold)
        return
    if status < 400 and isinstance(parsed, dict):
        if call.native is not None:
            from rock.chat import native

            call.record.finish("success", status, native.to_completion(call.native["api"], parsed))
            call.record.native["response"] = parsed
            native.remember(call, parsed, call.record.response)
        else:
            call.record.finish("success", status, parsed)
        ep.deliver(call, "json", status, raw)
        return
    call.record.finish("failure", status, parsed if isinstance(parsed, dict) else None,
                       f"upstream_status={status}: {raw[:500].decode(errors='replace')}")
    ep.deliver(call, "error", status, raw)
