"""Validation of ingested events: one event or a list, filled with ``id``, ``ts``, ``data``, ``user``.

Shared by the ingest route (``/e/{key}``) and run control (``inngest-mw send``, the UI's form).
"""

from __future__ import annotations

from typing import Any

from inngest_mw_dev.ids import new_ulid, ulid_from_seed
from inngest_mw_dev.limits import MAX_EVENT_BYTES, MAX_EVENTS, json_bytes

__all__ = ["normalize_events"]

_MIN_TS_MS = 315_532_800_000  # 1980-01-01
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01


def normalize_events(body: object, *, seed: str | None, now_ms: int) -> list[dict[str, Any]]:
    """Validate an ingest body (one event or a list) and fill ``id``, ``ts``, ``data``, ``user``.

    Raises ValueError with a message naming the offending event.
    """
    raw_events = body if isinstance(body, list) else [body]
    if not raw_events:
        raise ValueError("no events given")
    if len(raw_events) > MAX_EVENTS:
        raise ValueError(f"too many events: {len(raw_events)} (max {MAX_EVENTS})")
    events: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        where = f"event #{index}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be a JSON object")
        if json_bytes(raw) > MAX_EVENT_BYTES:
            raise ValueError(f"{where}: larger than {MAX_EVENT_BYTES // 1024} KiB")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: name must be a non-empty string")
        data = raw.get("data")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ValueError(f"{where}: data must be a JSON object")
        user = raw.get("user")
        user = {} if user is None else user
        if not isinstance(user, dict):
            raise ValueError(f"{where}: user must be a JSON object")
        ts = raw.get("ts") or 0
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise ValueError(f"{where}: ts must be milliseconds since the epoch")
        if ts and not _MIN_TS_MS <= ts <= _MAX_TS_MS:
            raise ValueError(f"{where}: ts must be between 1980 and 2100 (in milliseconds)")
        event_id = raw.get("id")
        if not isinstance(event_id, str) or not event_id:
            event_id = (ulid_from_seed(seed, index) if seed else None) or new_ulid(now_ms)
        event = {**raw, "id": event_id, "name": name, "data": data, "user": user,
                 "ts": int(ts) or now_ms}  # fmt: skip
        events.append(event)
    return events
