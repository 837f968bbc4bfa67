"""Read-side queries for run control, the CLI and the web UI: run filters, pages, ID prefixes.

Kept apart from ``store`` (which serves the run machine's writes) so listing and searching can
grow without touching the engine's hot path. The indexes these queries need are declared with
the schema (``migrations``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from inngest_mw_dev.machine import CANCELLED, COMPLETED, FAILED, RUNNING, SKIPPED
from inngest_mw_dev.store import RunRow, Store

__all__ = [
    "MAX_PAGE",
    "RUN_STATUSES",
    "EventSummary",
    "RefError",
    "RunFilter",
    "RunPage",
    "find_runs",
    "list_events",
    "parse_time",
    "resolve_run_id",
    "runs_by_event",
]

RUN_STATUSES = (RUNNING, COMPLETED, FAILED, CANCELLED, SKIPPED)
MAX_PAGE = 500
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class RefError(LookupError):
    """A reference (run ID prefix, function, step) that names nothing or more than one thing.

    ``status`` is the HTTP status the API answers with (404 for nothing, 400 for ambiguous).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_time(text: str, now: float) -> float:
    """Seconds since the epoch from ISO 8601, epoch seconds/milliseconds, or an age like ``15m``.

    An age means that long before ``now``. Raises ValueError with what is accepted.
    """
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        return now - float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number / 1000 if number > 1e11 else number
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give an ISO 8601 time (2026-05-01T12:00:00Z),"
            " epoch seconds or milliseconds, or an age such as 30s, 15m, 2h, 7d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.timestamp()


def resolve_run_id(store: Store, ref: str) -> str:
    """The full ID of the run whose ID is ``ref`` or starts with it (case-insensitive)."""
    prefix = ref.strip().upper()
    if not prefix:
        raise RefError(400, "give a run ID or the start of one")
    rows = store.read(
        "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2", prefix, prefix + "\x7f"
    )
    if not rows:
        raise RefError(404, f"no run has an ID starting with {ref.strip()}")
    if len(rows) > 1 and rows[0]["id"] != prefix:
        raise RefError(
            400, f"run ID prefix {ref.strip()} is ambiguous: several runs match; give more of it"
        )
    return str(rows[0]["id"])


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to list: any of ``statuses``, one function, queued in [since, until)."""

    statuses: tuple[str, ...] = ()
    function_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 20
    after: str | None = None  # page cursor: the last run ID of the previous page


@dataclass(slots=True)
class RunPage:
    runs: list[RunRow]
    next_cursor: str | None


def _run(row: sqlite3.Row) -> RunRow:
    data = dict(row)
    data["events"] = json.loads(data["events"])
    data["output"] = None if data["output"] is None else json.loads(data["output"])
    data["error"] = None if data["error"] is None else json.loads(data["error"])
    data["force_plan"] = bool(data["force_plan"])
    return RunRow(**data)


def _where(flt: RunFilter, store: Store) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if flt.statuses:
        clauses.append(f"status IN ({','.join('?' * len(flt.statuses))})")
        args.extend(flt.statuses)
    if flt.function_id:
        clauses.append("function_id = ?")
        args.append(flt.function_id)
    if flt.since is not None:
        clauses.append("queued_at >= ?")
        args.append(flt.since)
    if flt.until is not None:
        clauses.append("queued_at < ?")
        args.append(flt.until)
    if flt.after:
        rows = store.read("SELECT queued_at FROM runs WHERE id = ?", flt.after)
        if not rows:
            raise RefError(400, f"cursor {flt.after} names no run")
        clauses.append("(queued_at < ? OR (queued_at = ? AND id < ?))")
        args.extend([rows[0]["queued_at"], rows[0]["queued_at"], flt.after])
    return clauses, args


def find_runs(store: Store, flt: RunFilter) -> RunPage:
    """Runs matching ``flt``, newest first, one page of ``flt.limit``."""
    clauses, args = _where(flt, store)
    sql = "SELECT * FROM runs"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = store.read(sql + " ORDER BY queued_at DESC, id DESC LIMIT ?", *args, flt.limit + 1)
    runs = [_run(r) for r in rows[: flt.limit]]
    return RunPage(runs, runs[-1].id if len(rows) > flt.limit and runs else None)


def running_ids(store: Store, flt: RunFilter) -> list[str]:
    """IDs of every running run matching ``flt`` (its status and cursor are ignored)."""
    scoped = RunFilter(
        statuses=(RUNNING,), function_id=flt.function_id, since=flt.since, until=flt.until
    )
    clauses, args = _where(scoped, store)
    rows = store.read("SELECT id FROM runs WHERE " + " AND ".join(clauses), *args)
    return [str(r["id"]) for r in rows]


@dataclass(slots=True)
class EventSummary:
    id: str
    name: str
    received_at: float
    body: dict[str, Any]
    runs: list[dict[str, str]] = field(default_factory=list)


def runs_by_event(store: Store, event_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """``{event_id: [{run_id, function_id, status}]}`` for a page of events, in one query."""
    found: dict[str, list[dict[str, str]]] = {e: [] for e in event_ids}
    if not event_ids:
        return found
    rows = store.read(
        "SELECT id, function_id, status, event_id FROM runs WHERE event_id IN"
        f" ({','.join('?' * len(event_ids))}) ORDER BY queued_at",
        *event_ids,
    )
    for row in rows:
        found[row["event_id"]].append(
            {"run_id": row["id"], "function_id": row["function_id"], "status": row["status"]}
        )
    return found


def list_events(
    store: Store, *, limit: int, before: str | None = None, internal: bool = False
) -> tuple[list[EventSummary], str | None]:
    """Received events, newest first, with the runs each started; the next page's cursor.

    ``internal`` includes the engine's own ``inngest/...`` events (run finished, failed...).
    """
    clauses: list[str] = []
    args: list[object] = []
    if not internal:
        clauses.append("name NOT LIKE 'inngest/%'")
    if before:
        rows = store.read("SELECT received_at FROM events WHERE id = ?", before)
        if not rows:
            raise RefError(400, f"cursor {before} names no event")
        clauses.append("(received_at < ? OR (received_at = ? AND id < ?))")
        args.extend([rows[0]["received_at"], rows[0]["received_at"], before])
    sql = "SELECT id, name, body, received_at FROM events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = store.read(sql + " ORDER BY received_at DESC, id DESC LIMIT ?", *args, limit + 1)
    events = [
        EventSummary(r["id"], r["name"], r["received_at"], json.loads(r["body"]))
        for r in rows[:limit]
    ]
    runs = runs_by_event(store, [e.id for e in events])
    for event in events:
        event.runs = runs[event.id]
    return events, events[-1].id if len(rows) > limit and events else None
