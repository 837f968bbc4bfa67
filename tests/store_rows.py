"""Rows for the engine's store tests: a running run as the engine inserts one."""

from __future__ import annotations

from typing import Any

from inngest_mw_dev.store import RunRow

__all__ = ["running_run"]

EVENT: dict[str, Any] = {"id": "ev1", "name": "a", "data": {}}


def running_run(
    run_id: str = "run1",
    *,
    events: list[dict[str, Any]] | None = None,
    function_id: str = "app-fn",
    app_id: str = "app",
    max_attempts: int = 5,
) -> RunRow:
    """A run of ``function_id`` that has just started, triggered by ``events`` (one plain event
    by default)."""
    events = events if events is not None else [EVENT]
    return RunRow(
        id=run_id,
        function_id=function_id,
        app_id=app_id,
        event_id=str(events[0].get("id", "")),
        events=events,
        status="Running",
        output=None,
        error=None,
        queued_at=1.0,
        started_at=None,
        ended_at=None,
        force_plan=False,
        pending=0,
        max_attempts=max_attempts,
        correlation_id=None,
    )
