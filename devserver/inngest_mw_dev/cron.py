"""Cron trigger schedules: 5-field expressions with an optional ``TZ=``/``CRON_TZ=`` zone prefix.

Mirrors the server's parser (no seconds field, no ``@daily`` descriptors) on top of croniter.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

__all__ = ["CronSchedule", "parse_cron"]

_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated cron expression and the zone its fields are read in."""

    source: str
    fields: str
    zone: dt.tzinfo

    def next_after(self, after: float) -> float:
        """The first fire time strictly after the unix time ``after``."""
        from croniter import croniter

        start = dt.datetime.fromtimestamp(after, self.zone)
        nxt: dt.datetime = croniter(self.fields, start).get_next(dt.datetime)
        return nxt.timestamp()


def parse_cron(source: str) -> CronSchedule:
    """Validate ``source``; raise ValueError with a reason the user can act on."""
    text = source.strip()
    if not text:
        raise ValueError("cron expression is empty")
    if len(text) > _MAX_LENGTH:
        raise ValueError(f"cron expression is longer than {_MAX_LENGTH} characters")
    zone: dt.tzinfo = dt.UTC
    head, _, rest = text.partition(" ")
    if head.startswith(("TZ=", "CRON_TZ=")):
        name = head.split("=", 1)[1]
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r} in cron expression") from exc
        text = rest.strip()
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {source!r} must have 5 fields (minute hour day month weekday)"
        )
    from croniter import croniter  # with dateutil: loaded by the first cron trigger

    if not croniter.is_valid(" ".join(fields)):
        raise ValueError(f"invalid cron expression {source!r}")
    return CronSchedule(source=source, fields=" ".join(fields), zone=zone)
