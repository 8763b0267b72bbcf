"""Rollout traces: one OpenTelemetry span per rollout, with a child span per phase (queue, image, agent
sandbox start, harness install, harness run, each model call, diff, verifier queue, verifier start,
tests, grading), exported over OTLP: to a file by default (OTLP/JSON, one ``ExportTraceServiceRequest``
a line, as the OpenTelemetry file exporter specification writes them) and to a collector over
OTLP/HTTP when an endpoint is configured.

The OpenTelemetry SDK is optional (the ``tracing`` extra). Without it, or with no destination,
``Tracing.open`` returns None and ``phase()`` is a shared no-op context: rollouts without tracing pay
one context-variable read per phase.

    tracing = Tracing.open(file="job.traces.jsonl", endpoint=None)   # None: off
    with tracing.rollout("task-1", {"rock.harness": "ours"}) as span:  # sets the current rollout
        with phase("image"):
            ...
        model_calls(rec.model_calls)                                # spans from the calls' own times
    tracing.close()                     # the file: every span; a collector: what it takes within FLUSH_S

A harness marks its own install and run (``span_at`` from the times it took around its calls), and the model
calls become spans from the times their records carry.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from rock.agentic.record import RolloutRecord

try:  # the optional extra
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import Status, StatusCode, set_span_in_context
    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised where the extra is absent
    AVAILABLE = False

SERVICE = "rock-rollouts"
# At a job's end, how long a collector gets to take the spans still queued: the spans go out in the background
# while the job runs, and a collector that does not answer must not hold the job's end for the exporter's timeout.
FLUSH_S = 1.0
log = logging.getLogger("rock.agentic")
_current: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar("rock_rollout_span", default=None)
_NOTHING = contextlib.nullcontext()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _otlp_json(message: Any) -> dict:
    """A protobuf OTLP message in OTLP/JSON: lowerCamelCase names, enums as integers, ids as hex."""
    from google.protobuf.json_format import MessageToDict

    def hexed(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                        else hexed(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [hexed(v) for v in value]
        return value

    return hexed(MessageToDict(message, use_integers_for_enums=True))


if AVAILABLE:
    class FileSpanExporter(SpanExporter):
        """Spans as OTLP/JSON lines appended to a file: each export one ``ExportTraceServiceRequest``."""

        def __init__(self, path: Path):
            self.path = Path(path)
            self._lock = threading.Lock()

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            line = json.dumps(_otlp_json(encode_spans(spans)), separators=(",", ":")) + "\n"
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    class CountingExporter(SpanExporter):
        """An exporter that counts the spans its inner exporter delivered (the rest were not)."""

        def __init__(self, inner: SpanExporter):
            self.inner = inner
            self.delivered = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            result = self.inner.export(spans)
            if result is SpanExportResult.SUCCESS:
                self.delivered += len(spans)
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()


class Tracing:
    """A job's tracer: a provider with a file exporter and/or an OTLP/HTTP exporter."""

    def __init__(self, provider: Any, local: Any = None, remote: tuple[Any, Any, str] | None = None):
        self.provider = provider
        self.tracer = provider.get_tracer("rock.agentic")
        self.local = local  # the file's span processor
        self.remote = remote  # the collector's (span processor, counting exporter, url)
        self.ended = 0  # spans ended: what the collector should have received
        self._lock = threading.Lock()

    @classmethod
    def open(cls, file: str | Path | None = None, endpoint: str | None = None,
             headers: dict[str, str] | None = None, attributes: dict[str, Any] | None = None) -> "Tracing | None":
        """A tracer writing to ``file`` (OTLP/JSON lines) and/or sending to ``endpoint`` (an OTLP/HTTP collector's
        base URL, ``/v1/traces`` appended unless given); None when neither is given or the SDK is absent."""
        if not AVAILABLE or (file is None and not endpoint):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # No exit hook: close() bounds the collector's flush, an exit hook would wait out its timeout again.
        provider = TracerProvider(resource=Resource.create({"service.name": SERVICE, **(attributes or {})}),
                                  shutdown_on_exit=False)
        local = remote = None
        if file is not None:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            local = BatchSpanProcessor(FileSpanExporter(Path(file)))
            provider.add_span_processor(local)
        if endpoint:
            url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
            counting = CountingExporter(OTLPSpanExporter(endpoint=url, headers=headers))
            remote = (BatchSpanProcessor(counting), counting, url)
            provider.add_span_processor(remote[0])
        tracing = cls(provider, local, remote)
        provider.add_span_processor(_Ended(tracing))
        return tracing

    @contextlib.contextmanager
    def rollout(self, task_id: str, attributes: dict[str, Any] | None = None,
                queued_at: float | None = None) -> Iterator[Any]:
        """The rollout's span, current for ``phase()`` inside; a ``queue`` child from ``queued_at`` (Unix s)."""
        now = time.time()
        start = queued_at if queued_at is not None and queued_at <= now else now
        span = self.tracer.start_span("rollout", start_time=_ns(start),
                                      attributes={"rock.task_id": task_id, **(attributes or {})})
        if queued_at is not None:
            self.tracer.start_span("queue", context=set_span_in_context(span), start_time=_ns(start)).end(_ns(now))
        token = _current.set((self, span))
        try:
            yield span
        finally:
            _current.reset(token)
            span.end()

    def close(self, flush_s: float = FLUSH_S) -> dict:
        """Flush and stop the exporters: the file gets every span; a collector gets ``flush_s`` for the spans still
        queued (it has had the rest in the background), and what it did not take is counted and logged. Returns
        ``{"spans", "delivered", "undelivered"}`` (the collector's counts; zeros without one)."""
        if self.local is not None:
            self.local.shutdown()
        if self.remote is None:
            return {"spans": self.ended, "delivered": 0, "undelivered": 0}
        processor, counting, url = self.remote
        # The processor's shutdown exports what is queued and waits for it: on a daemon thread, waited for flush_s,
        # so a collector that never answers costs the job flush_s, not the exporter's timeout.
        flush = threading.Thread(target=processor.shutdown, name="rock-otlp-flush", daemon=True)
        flush.start()
        flush.join(flush_s)
        out = {"spans": self.ended, "delivered": counting.delivered, "undelivered": self.ended - counting.delivered}
        if out["undelivered"]:
            log.warning("the trace collector %s did not take %d of %d spans within %.1f s of the job's end "
                        "(the trace file has them all)", url, out["undelivered"], out["spans"], flush_s)
        return out

    def _count(self) -> None:
        with self._lock:
            self.ended += 1


if AVAILABLE:
    class _Ended(SpanProcessor):
        """Counts the tracer's ended spans."""

        def __init__(self, tracing: Tracing):
            self.tracing = tracing

        def on_end(self, span: ReadableSpan) -> None:
            self.tracing._count()


def phase(name: str, **attributes: Any) -> Any:
    """A context timing one phase as a child span of the current rollout (a no-op without one)."""
    current = _current.get()
    if current is None:
        return _NOTHING
    return _phase(current, name, attributes)


@contextlib.contextmanager
def _phase(current: tuple[Any, Any], name: str, attributes: dict) -> Iterator[Any]:
    tracing, parent = current
    span = tracing.tracer.start_span(name, context=set_span_in_context(parent), attributes=attributes)
    try:
        yield span
    except BaseException as exc:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
        raise
    finally:
        span.end()


def span_at(name: str, start: float, end: float, **attributes: Any) -> None:
    """A finished child span of the current rollout from Unix times (a no-op without one)."""
    current = _current.get()
    if current is None:
        return
    tracing, parent = current
    span = tracing.tracer.start_span(name, context=set_span_in_context(parent), start_time=_ns(start),
                                     attributes={k: v for k, v in attributes.items() if v is not None})
    span.end(_ns(max(start, end)))


def active() -> bool:
    """Whether a rollout span is current (the phases are being traced)."""
    return _current.get() is not None


def model_calls(calls: list) -> None:
    """One ``model_call`` span per recorded call, from its own start and end times."""
    if not active():
        return
    for c in calls:
        if not isinstance(c, dict) or not isinstance(c.get("start_time"), (int, float)):
            continue
        end = c.get("end_time") if isinstance(c.get("end_time"), (int, float)) else c["start_time"]
        span_at("model_call", c["start_time"], end, **{
            "rock.call.index": c.get("index"), "rock.call.status": c.get("status"),
            "rock.call.api": (c.get("native") or {}).get("api") or "chat", "rock.call.model": c.get("model"),
            "http.response.status_code": c.get("http_status")})


def end_rollout(span: Any, rec: RolloutRecord) -> None:
    """The rollout's outcome on its span: reward, error, harness exit."""
    for key, value in (("rock.reward", rec.reward), ("rock.error", rec.error),
                       ("rock.harness.exit_code", rec.harness.exit_code),
                       ("rock.model_calls", len(rec.model_calls)), ("rock.agent_sandbox", rec.agent_sandbox)):
        if value is not None:
            span.set_attribute(key, value)
    if rec.error:
        span.set_status(Status(StatusCode.ERROR, rec.error[:500]))


__all__ = ["AVAILABLE", "Tracing", "active", "end_rollout", "model_calls", "phase", "span_at"]
