"""``UserlandSpans``: send the spans an app makes inside its steps to Inngest, beside the run.

A span processor for the app's own ``TracerProvider`` (the OpenTelemetry SDK) that picks out the
spans started, directly or not, inside a step's handler (under the middleware's ``inngest.step``
span), marks each with what the server reads to tie it to the run (``inngest.traceparent``,
``inngest.traceref`` from the call request's ``tracestate``, ``sdk.run.id``, ``sys.function.id``
and the step's ``inngest.step.*``), and exports them over OTLP/HTTP to the API's
``/v1/traces/userland`` with the signing key. Every other span goes on to the app's other
processors only. The middleware flushes the batch before each call request answers, so a run's
spans are on the server when the request that made them ends::

    spans = UserlandSpans(client)
    provider = TracerProvider()
    provider.add_span_processor(spans)
    client.add_middleware(OTelMiddleware.factory(tracer_provider=provider, userland=spans))

Needs the ``export`` extra (``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.trace import Span as ApiSpan

    from inngest_mw import Inngest

__all__ = ["PATH", "UserlandSpans"]

PATH: Final = "v1/traces/userland"
FLUSH_TIMEOUT_MS: Final = 5_000


@dataclass(frozen=True, slots=True)
class _Parent:
    attributes: dict[str, AttributeValue]


class UserlandSpans(SpanProcessor):
    """Exports the spans made inside steps to the Inngest API of ``client`` (see the module)."""

    def __init__(self, client: Inngest, *, exporter: SpanExporter | None = None) -> None:
        self._client = client
        self._exporter = exporter
        self._batcher: BatchSpanProcessor | None = None
        self._tracked: dict[int, _Parent] = {}
        self._roots: set[int] = set()
        self._lock = threading.Lock()

    def _batch(self) -> BatchSpanProcessor:
        with self._lock:
            if self._batcher is None:
                exporter = self._exporter or self._otlp()
                self._batcher = BatchSpanProcessor(exporter, schedule_delay_millis=200)
            return self._batcher

    def _otlp(self) -> SpanExporter:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        headers = {
            k: v for k, v in self._client.outbound_headers().items() if k.lower() != "content-type"
        }
        return OTLPSpanExporter(endpoint=f"{self._client.api_origin}{PATH}", headers=headers)

    # -- called by the middleware ---------------------------------------------------------

    def declare(self, span: ApiSpan, attributes: dict[str, AttributeValue]) -> None:
        """``span`` (a step span) is a root: the spans started under it are exported."""
        span_id = span.get_span_context().span_id
        with self._lock:
            self._tracked[span_id] = _Parent(attributes)
            self._roots.add(span_id)

    def release(self, span: ApiSpan) -> None:
        span_id = span.get_span_context().span_id
        with self._lock:
            self._tracked.pop(span_id, None)
            self._roots.discard(span_id)

    # -- SpanProcessor --------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        parent = span.parent
        if parent is None:
            return
        with self._lock:
            state = self._tracked.get(parent.span_id)
            if state is None:
                return
            self._tracked[span.context.span_id] = state
        span.set_attributes(state.attributes)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        with self._lock:
            if context.span_id in self._roots:
                return
            state = self._tracked.pop(context.span_id, None)
        if state is not None:
            self._batch().on_end(span)

    def force_flush(self, timeout_millis: int = FLUSH_TIMEOUT_MS) -> bool:
        batcher = self._batcher
        return True if batcher is None else batcher.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self._batcher is not None:
            self._batcher.shutdown()  # type: ignore[no-untyped-call]  # unannotated in the SDK
