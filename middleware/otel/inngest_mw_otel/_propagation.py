"""Where a request's trace comes from, and how it travels to the runs a function starts.

A request continues, in order: the server's W3C ``traceparent`` header, the trace context the sending
run put in the event (``event.data["_otel"]``), or a synthetic parent derived from the run ID. So every
request of one run lands in one trace even when nothing upstream is traced, and invoked or
event-triggered runs join the trace of the run that started them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACE_CONTEXT_KEY", "carrier", "from_event", "from_headers", "from_run_id"]

TRACE_CONTEXT_KEY: Final = "_otel"
"""The key in event data (and invoke data) that carries ``{"traceparent": ..., "tracestate": ...}``.

Not ``_inngest``: the server owns that key and rewrites it for invokes."""

# W3C trace context explicitly, not the global propagator: the Inngest server sends W3C headers, and
# the sender and receiver of an event may run in apps configured differently.
_W3C: Final = TraceContextTextMapPropagator()


def _valid(context: Context) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


def from_headers(headers: Mapping[str, str]) -> Context | None:
    """The server's trace context from the request headers, if it sent a valid one."""
    context = _W3C.extract(headers)
    return context if _valid(context) else None


def from_event(data: Mapping[str, Any]) -> Context | None:
    """The sender's trace context from event data, if present and valid."""
    raw = data.get(TRACE_CONTEXT_KEY)
    if not isinstance(raw, dict):
        return None
    context = _W3C.extract({k: v for k, v in raw.items() if isinstance(v, str)})
    return context if _valid(context) else None


def from_run_id(run_id: str) -> Context:
    """A remote parent whose trace ID is a hash of the run ID: the same for every request of a run.

    The parent span itself is never recorded. It is marked sampled so that the default
    parent-based sampler keeps the run; a ``TraceIdRatioBased`` sampler still samples whole runs
    consistently, because the trace ID is deterministic.
    """
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    parent = trace.SpanContext(
        trace_id=int(digest[:32], 16) or 1,
        span_id=int(digest[32:48], 16) or 1,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def carrier(context: Context | None = None) -> dict[str, str]:
    """The W3C headers for ``context`` (default: the current one); empty when nothing is traced."""
    out: dict[str, str] = {}
    _W3C.inject(out, context=context)
    return out
