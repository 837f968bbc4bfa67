"""What the app's middleware did in each request of a run, as the API, the UI and the CLI show it.

The app reports it per call request (``inngest_mw.hooktrace``); the engine keeps one row per
request (``request_hooks``). Here a row becomes JSON with each hook's depth (how many wrap hooks
it ran inside), and the JSON becomes the lines ``inngest-mw run`` prints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from inngest_mw_dev.kinds import DISCOVERY
from inngest_mw_dev.store import RequestHooksRow

__all__ = ["format_us", "hook_lines", "requests_view"]


def format_us(us: int) -> str:
    """A hook's duration: microseconds under a millisecond, else milliseconds."""
    if us < 1000:
        return f"{us}µs"
    if us < 10_000_000:
        return f"{us / 1000:.2f}ms"
    return f"{us / 1_000_000:.2f}s"


def _depths(calls: list[dict[str, Any]]) -> list[int]:
    """How many wrap hooks each call started inside (calls come in the order they started)."""
    open_until: list[int] = []
    depths = []
    for call in calls:
        start = call["start_us"]
        while open_until and start >= open_until[-1]:
            open_until.pop()
        depths.append(len(open_until))
        if call["hook"].startswith("wrap_") and call["duration_us"] > 0:
            open_until.append(start + call["duration_us"])
    return depths


def requests_view(
    rows: list[RequestHooksRow], step_names: Mapping[str, str], run_start: float
) -> list[dict[str, Any]]:
    """One entry per traced request of a run, oldest first."""
    out = []
    for number, row in enumerate(rows, 1):
        calls = [dict(call) for call in row.calls]
        for call, depth in zip(calls, _depths(calls), strict=True):
            call["depth"] = depth
        step = None if row.step == DISCOVERY else row.step
        out.append(
            {
                "request": number,
                "started_at": dt.datetime.fromtimestamp(row.started_at, dt.UTC).isoformat(
                    timespec="milliseconds"
                ),
                "offset_ms": max(0, round((row.started_at - run_start) * 1000)),
                "step": step,
                "step_name": step_names.get(step, step) if step else None,
                "attempt": row.attempt + 1,
                "outcome": row.outcome,
                "hooks": calls,
                "span_us": max([1, *(c["start_us"] + c["duration_us"] for c in calls)]),
                "more": row.more,
                "problem": row.problem,
                "errors": sum(1 for call in calls if call.get("error")),
            }
        )
    return out


def hook_lines(requests: list[dict[str, Any]]) -> list[str]:
    """The ``middleware:`` section of ``inngest-mw run``: each request, then its hooks in order."""
    lines: list[str] = []
    for request in requests:
        target = f"step {request['step_name']}" if request["step"] else "the function"
        lines.append(
            f"  request {request['request']}: {target}, attempt {request['attempt']}"
            f" -> {request['outcome']}"
        )
        for call in request["hooks"]:
            name = "  " * call["depth"] + f"{call['middleware']}.{call['hook']}"
            own = ""
            if call["hook"].startswith("wrap_") and call["self_us"] != call["duration_us"]:
                own = f" (own {format_us(call['self_us'])})"
            on = f"  [{call['step']}]" if call.get("step") else ""
            raised = f"  raised {call['error']}" if call.get("error") else ""
            lines.append(f"    {name:<44}{format_us(call['duration_us']):>10}{own}{on}{raised}")
        if not request["hooks"]:
            lines.append("    (no hook ran)")
        if request["more"]:
            lines.append(f"    ... and {request['more']} more hook call(s) not reported")
        if request["problem"]:
            lines.append(f"    (the app's report could not be read: {request['problem']})")
    return lines
