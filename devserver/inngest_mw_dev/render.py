"""Human-readable lines for run history and run timelines (used by the CLI).

One place decides how a history entry reads, so the live ``dev`` log and ``run`` agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["describe", "format_ms", "preview"]


def preview(value: object, limit: int = 80) -> str:
    """Compact JSON of ``value``, shortened to ``limit`` characters."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.2f}s"


def _error_text(error: object) -> str:
    if isinstance(error, Mapping):
        return f"{error.get('name', 'Error')}: {error.get('message', '')}"
    return preview(error)


def _retrying(detail: Mapping[str, Any]) -> str:
    """``retrying in 1.25s (attempt 2 of 4)``: the delay is a wait still to come, not a duration."""
    attempt = detail.get("attempt", 0) + 1  # recorded 0-based: the attempt about to be made
    of = f" of {detail['max_attempts']}" if detail.get("max_attempts") else ""
    return f"retrying in {format_ms(detail.get('delay_ms'))} (attempt {attempt}{of})"


def describe(kind: str, step: str | None, detail: Mapping[str, Any]) -> str:
    """One line for a history entry, e.g. ``step "charge" completed in 12ms``."""
    label = f'step "{step}"' if step else "run"
    match kind:
        case "queued":
            events = f" ({detail['events']} events)" if detail.get("events") else ""
            reason = f": {detail['reason']}" if detail.get("reason") else ""
            return f"queued by {detail.get('event')}{events}{reason}"
        case "skipped":
            return f"skipped: {detail.get('reason')}"
        case "delayed" | "prioritized":
            return f"{kind}: {detail.get('reason')}"
        case "concurrency_limited":
            return f"{label} waiting for capacity: {detail.get('reason')}"
        case "started":
            return "started"
        case "step_completed":
            return f"{label} completed in {format_ms(detail.get('duration_ms'))}"
        case "step_failed":
            return f"{label} failed: {_error_text(detail.get('error'))}"
        case "retry_scheduled":
            return f"{label} failed: {detail.get('reason')}; {_retrying(detail)}"
        case "sleeping":
            return f"{label} sleeping {detail.get('seconds')}s"
        case "waiting":
            condition = f" if {detail['expression']}" if detail.get("expression") else ""
            return f"{label} waiting for {detail.get('event')}{condition}"
        case "invoking":
            return (
                f"{label} invoking {detail.get('function_id')} (run {detail.get('child_run_id')})"
            )
        case "waiting_signal":
            return f"{label} waiting for signal {detail.get('signal')}"
        case "signal_replaced":
            return f"wait for signal {detail.get('signal')} taken over by run {detail.get('by')}"
        case "requesting":
            what = detail.get("method") or f"{detail.get('format')} model request to"
            return f"{label} engine requesting {what} {detail.get('url')}"
        case "answered":
            status = f"HTTP {detail['status']}" if detail.get("status") else "no answer"
            return f"{label} answered {status} in {format_ms(detail.get('duration_ms'))}"
        case "published":
            return (
                f"published to {detail.get('channel')}/{detail.get('topic')}: "
                f"{detail.get('data')} ({detail.get('bytes')} bytes)"
            )
        case "resumed":
            failed = " with an error" if detail.get("status") == "Failed" else ""
            return f"{label} resumed by {detail.get('via')}{failed}"
        case "completed":
            return f"completed, output {preview(detail.get('output'))}"
        case "failed":
            error = detail.get("error")
            message = error.get("message") if isinstance(error, Mapping) else None
            shown = detail.get("reason") and detail["reason"] != message
            reason = f" [{detail['reason']}]" if shown else ""
            return f"FAILED: {_error_text(error)}{reason}"
        case "cancelled":
            return f"cancelled: {detail.get('reason')}"
        case "metadata":
            keys = ", ".join(str(k) for k in detail.get("keys") or ()) or "no keys"
            where = f"{label} ({detail.get('scope')})" if step else "run"
            return f"metadata {detail.get('name')} {detail.get('op')} on {where}: {keys}"
        case "metadata_refused":
            return f"{label} metadata refused: {detail.get('reason')}"
    return f"{kind} {preview(dict(detail))}"
