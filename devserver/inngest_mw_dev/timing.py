"""Time arithmetic of the protocol: sleep targets, ``Retry-After`` values and retry backoff.

All functions take and return unix seconds (floats) so the engine can inject its own clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

from inngest_mw.durations import parse_duration

__all__ = [
    "MAX_SLEEP_SECONDS",
    "backoff_seconds",
    "iso_time",
    "parse_date",
    "parse_retry_after",
    "parse_seconds",
    "sleep_until",
]

MAX_SLEEP_SECONDS = 366 * 86_400


def iso_time(ts: float | None) -> str | None:
    """A unix time as the API shows it: ISO 8601 in UTC, to the millisecond (None stays None)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


_MIN_RETRY, _MAX_RETRY = 1.0, 86_400.0
_MAX_BACKOFF = 6 * 3_600.0


def parse_seconds(text: str) -> float:
    """A time string (``"1h30m"``) as seconds; raises ValueError."""
    return parse_duration(text).total_seconds()


def parse_date(text: str) -> float | None:
    """An RFC 3339 / ISO 8601 or HTTP date as unix seconds, or None when it is neither."""
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def sleep_until(duration: object, name: object, now: float) -> float:
    """Wake-up time of a Sleep op: ``opts.duration``, else ``name`` as a time string or a date.

    Raises ValueError with a reason when neither parses or the sleep exceeds 366 days.
    """
    until: float | None = None
    for candidate in (duration, name):
        if not isinstance(candidate, str) or not candidate:
            continue
        if len(candidate) >= 10:
            until = parse_date(candidate)
        if until is None:
            try:
                until = now + parse_seconds(candidate)
            except ValueError:
                continue
        break
    if until is None:
        raise ValueError(f"invalid sleep duration {duration or name!r}")
    if until - now > MAX_SLEEP_SECONDS:
        raise ValueError("sleep exceeds the maximum of 366 days")
    return until


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Absolute retry time from a ``Retry-After`` header, clamped to [now+1s, now+24h]."""
    if not value:
        return None
    text = value.strip()
    at = now + int(text) if len(text) <= 7 and text.isdigit() else parse_date(text)
    if at is None:
        return None
    return min(max(at, now + _MIN_RETRY), now + _MAX_RETRY)


def backoff_seconds(attempt: int, base: float) -> float:
    """Exponential backoff with jitter for the ``attempt``-th retry (0-based), capped at 6 hours."""
    delay: float = min(base * 2.0 ** min(attempt, 30), _MAX_BACKOFF)
    return delay * (1.0 + random.random() * 0.3)
