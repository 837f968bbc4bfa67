"""The tracer and metric instruments one middleware configuration records to.

Made once per ``OTelMiddleware.factory(...)`` (or once for the global providers) and shared by all
its requests: instruments are created once, never per request.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from inngest_mw_otel.userland import UserlandSpans

__all__ = ["Telemetry", "default_telemetry"]

SCOPE: Final = "inngest_mw_otel"
VERSION: Final = "0.1.0"


class Telemetry:
    """A tracer plus run and step counters and duration histograms.

    ``None`` providers mean the global ones (resolved lazily, so they may be set after this is made).
    ``userland``: the ``UserlandSpans`` processor exporting the spans made in steps to Inngest.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        userland: UserlandSpans | None = None,
    ) -> None:
        self.userland = userland
        self.tracer = trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider)
        self.runs_started = meter.create_counter(
            "inngest.runs.started", unit="{run}", description="Runs whose first request began"
        )
        self.runs_finished = meter.create_counter(
            "inngest.runs.finished", unit="{run}", description="Runs whose function returned"
        )
        self.runs_failed = meter.create_counter(
            "inngest.runs.failed",
            unit="{attempt}",
            description="Failed run attempts; inngest.final_attempt=true means the run failed",
        )
        self.steps_started = meter.create_counter(
            "inngest.steps.started", unit="{attempt}", description="Step attempts that began"
        )
        self.steps_finished = meter.create_counter(
            "inngest.steps.finished", unit="{attempt}", description="Step attempts that returned"
        )
        self.steps_failed = meter.create_counter(
            "inngest.steps.failed",
            unit="{attempt}",
            description="Step attempts that raised; inngest.final_attempt=true means no retry",
        )
        self.run_duration = meter.create_histogram(
            "inngest.run.duration",
            unit="s",
            description="From the triggering event's timestamp to the run's end",
        )
        self.step_duration = meter.create_histogram(
            "inngest.step.duration", unit="s", description="Duration of one step attempt"
        )
        self.request_duration = meter.create_histogram(
            "inngest.request.duration", unit="s", description="Duration of one call request"
        )


@functools.cache
def default_telemetry() -> Telemetry:
    """The telemetry of ``OTelMiddleware`` used as a plain class: the global providers."""
    return Telemetry()
