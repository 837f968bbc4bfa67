"""A run's waterfall: each step as a span from the run's start, with its attempts as sub-spans.

Attempts come from the step's history: a retry is scheduled when an attempt fails, and the next
attempt starts when that delay has passed. Sleeps, waits and invokes are spans of waiting time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from inngest_mw_dev.store import HistoryRow, RunRow, StepRow

__all__ = ["Attempt", "SpanKind", "StepSpan", "Waterfall", "waterfall"]


class SpanKind(StrEnum):
    STEP = "step"
    SLEEP = "sleep"
    WAIT = "wait"
    INVOKE = "invoke"


_KINDS = {
    "Sleep": SpanKind.SLEEP,
    "WaitForEvent": SpanKind.WAIT,
    "WaitForSignal": SpanKind.WAIT,
    "InvokeFunction": SpanKind.INVOKE,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    offset_ms: int
    duration_ms: int
    failed: bool


@dataclass(slots=True)
class StepSpan:
    id: str
    name: str
    kind: SpanKind
    status: str
    offset_ms: int
    duration_ms: int | None  # None while it is still going
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(slots=True)
class Waterfall:
    total_ms: int
    spans: list[StepSpan]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def waterfall(
    run: RunRow, steps: list[StepRow], history: list[HistoryRow], now: float
) -> Waterfall:
    start = run.queued_at
    end = run.ended_at or now
    retries: dict[str, list[HistoryRow]] = {}
    for entry in history:
        if entry.kind == "retry_scheduled" and entry.step:
            retries.setdefault(entry.step, []).append(entry)
    spans: list[StepSpan] = []
    for step in steps:
        began = step.started_at or start
        finished = step.ended_at
        kind = _KINDS.get(step.op, SpanKind.STEP)
        span = StepSpan(
            step.hash,
            step.name,
            kind,
            step.status,
            _ms(began - start),
            None if finished is None else _ms(finished - began),
        )
        if kind is SpanKind.STEP:
            attempt_start = began
            for entry in retries.get(step.name, []):
                span.attempts.append(
                    Attempt(_ms(attempt_start - start), _ms(entry.ts - attempt_start), True)
                )
                attempt_start = entry.ts + float(entry.detail.get("delay_ms") or 0) / 1000
            last_end = finished if finished is not None else end
            span.attempts.append(
                Attempt(
                    _ms(attempt_start - start),
                    _ms(max(last_end, attempt_start) - attempt_start),
                    step.status == "Failed",
                )
            )
        spans.append(span)
    return Waterfall(max(_ms(end - start), 1), spans)
