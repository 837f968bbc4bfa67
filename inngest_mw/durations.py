"""Inngest time strings (``"90s"``, ``"1h30m"``, ``"7d"``) to and from ``timedelta``.

Units are those of the server's parser: ns, us/µs, ms, s, m, h, d (24h), w (168h); no DST.
"""

from __future__ import annotations

import datetime as _dt
import re

__all__ = ["DurationLike", "format_duration", "parse_duration", "to_timedelta"]

DurationLike = int | float | str | _dt.timedelta
"""A duration as users give it: ``timedelta``, a time string, or a number of milliseconds."""

_UNITS_US = {
    "ns": 0.001,
    "us": 1.0,
    "µs": 1.0,
    "μs": 1.0,
    "ms": 1_000.0,
    "s": 1_000_000.0,
    "m": 60_000_000.0,
    "h": 3_600_000_000.0,
    "d": 86_400_000_000.0,
    "w": 604_800_000_000.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")


def parse_duration(text: str) -> _dt.timedelta:
    """Parse a time string; raise ``ValueError`` naming the text when it is not one."""
    source = text.strip()
    if not source:
        raise ValueError("empty duration")
    sign = 1
    if source[0] in "+-":
        sign = -1 if source[0] == "-" else 1
        source = source[1:]
    pos, total_us = 0, 0.0
    while pos < len(source):
        match = _PART.match(source, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: expected e.g. '30s', '1h30m', '7d'")
        total_us += float(match.group(1)) * _UNITS_US[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return _dt.timedelta(microseconds=sign * total_us)


def to_timedelta(value: DurationLike) -> _dt.timedelta:
    """Normalize a user-given duration (ints and floats are milliseconds, as in the official SDK)."""
    if isinstance(value, _dt.timedelta):
        return value
    if isinstance(value, bool):
        raise TypeError("a duration cannot be a bool")
    if isinstance(value, int | float):
        return _dt.timedelta(milliseconds=value)
    if isinstance(value, str):
        return parse_duration(value)
    raise TypeError(
        f"expected a timedelta, a time string or milliseconds, got {type(value).__name__}"
    )


def format_duration(value: _dt.timedelta) -> str:
    """The shortest exact time string: ``timedelta(minutes=90)`` -> ``"1h30m"``; sub-second -> ms."""
    us = round(value.total_seconds() * 1_000_000)
    if us == 0:
        return "0s"
    out = "-" if us < 0 else ""
    us = abs(us)
    for unit, size in (
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ):
        if us >= size:
            count, us = divmod(us, size)
            out += f"{count}{unit}"
    if us:
        out += f"{us}us"
    return out
