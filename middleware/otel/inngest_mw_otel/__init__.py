"""OpenTelemetry for inngest-mw: ``Inngest(middleware=[OTelMiddleware])``.

One trace per run across all its requests, a span per request and per executed step, trace context
carried into sent events and invokes, and run/step metrics. See README.md for the span model.
"""

from inngest_mw_otel._propagation import TRACE_CONTEXT_KEY
from inngest_mw_otel._telemetry import Telemetry
from inngest_mw_otel.middleware import OTelMiddleware

__all__ = ["TRACE_CONTEXT_KEY", "OTelMiddleware", "Telemetry"]
