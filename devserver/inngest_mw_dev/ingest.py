"""Validation of ingested events: one event or a list, filled with ``id``, ``ts``, ``data``, ``user``.

Shared by the ingest route (``/e/{key}``) and run control (``inngest-mw send``, the UI's form).
The rules are the server's (``pkg/event/inbound.go``, ``pkg/eventstream/eventstream.go`` in
``inngest/inngest``): names starting with ``inngest/`` are its own events and are refused, and
an event over the size limit is refused with the limit named.
"""

from __future__ import annotations

from typing import Any

from inngest_mw_dev.ids import new_ulid, ulid_from_seed
from inngest_mw_dev.limits import MAX_EVENT_BYTES, MAX_EVENTS, json_bytes

__all__ = ["INTERNAL_PREFIX", "EventError", "normalize_events"]

INTERNAL_PREFIX = "inngest/"
"""Events the engine itself emits (``inngest/function.finished``...); users may not send them."""

_MIN_TS_MS = 315_532_800_000  # 1980-01-01
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01


class EventError(ValueError):
    """An ingest body the engine refuses, at the event the message names.

    ``accepted`` are the valid events before that one: the server ingests those (it handles each
    event as it streams in) and answers with their IDs and the error. ``status`` is 413 for an
    event over the size limit, else 400.
    """

    def __init__(
        self, message: str, accepted: list[dict[str, Any]] | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.accepted = accepted or []
        self.status = status


def normalize_events(body: object, *, seed: str | None, now_ms: int) -> list[dict[str, Any]]:
    """Validate an ingest body (one event or a list) and fill ``id``, ``ts``, ``data``, ``user``.

    Raises ``EventError`` naming the offending event. A list over ``MAX_EVENTS`` is refused
    whole, before any event in it is looked at: the count is known up front here, where the
    server, reading a stream, would have taken the first 5,000.
    """
    raw_events = body if isinstance(body, list) else [body]
    if not raw_events:
        raise EventError("no events given")
    if len(raw_events) > MAX_EVENTS:
        raise EventError(
            f"too many events: {len(raw_events):,}; the limit is {MAX_EVENTS:,} per request"
        )
    events: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        where = f"event #{index}"
        if not isinstance(raw, dict):
            raise EventError(f"{where}: must be a JSON object", events)
        size = json_bytes(raw)
        if size > MAX_EVENT_BYTES:
            raise EventError(
                f"{where} is too large ({size:,} bytes): the event size limit is"
                f" {MAX_EVENT_BYTES:,} bytes ({MAX_EVENT_BYTES // 1024} KiB)",
                events,
                413,
            )
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise EventError(f"{where}: name must be a non-empty string", events)
        if name.lower().startswith(INTERNAL_PREFIX):
            raise EventError(
                f"{where}: the name {name!r} is reserved: names starting with"
                f" {INTERNAL_PREFIX!r} are Inngest's own events",
                events,
            )
        data = raw.get("data")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise EventError(f"{where}: data must be a JSON object", events)
        user = raw.get("user")
        user = {} if user is None else user
        if not isinstance(user, dict):
            raise EventError(f"{where}: user must be a JSON object", events)
        ts = raw.get("ts") or 0
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise EventError(f"{where}: ts must be milliseconds since the epoch", events)
        if ts and not _MIN_TS_MS <= ts <= _MAX_TS_MS:
            raise EventError(f"{where}: ts must be between 1980 and 2100 (in milliseconds)", events)
        event_id = raw.get("id")
        if not isinstance(event_id, str) or not event_id:
            event_id = (ulid_from_seed(seed, index) if seed else None) or new_ulid(now_ms)
        event = {
            **raw,
            "id": event_id,
            "name": name,
            "data": data,
            "user": user,
            "ts": int(ts) or now_ms,
        }
        events.append(event)
    return events
