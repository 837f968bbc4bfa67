"""Function options (triggers and flow control) as users declare them, validated at definition time.

Each class validates its own fields (pydantic) and renders the registration JSON the server expects
(``to_wire``); cross-field rules between options live in ``function.py``.
"""

from __future__ import annotations

import datetime as _dt
import re
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic

from inngest_mw.durations import format_duration, to_timedelta
from inngest_mw.event import EventModel

__all__ = [
    "Batch",
    "Cancel",
    "Concurrency",
    "Debounce",
    "Priority",
    "RateLimit",
    "Singleton",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
]


def _duration(value: object) -> _dt.timedelta:
    if isinstance(value, _dt.timedelta | str | int | float) and not isinstance(value, bool):
        try:
            td = to_timedelta(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if td.total_seconds() < 0:
            raise ValueError("must not be negative")
        return td
    raise ValueError("expected a timedelta, a time string like '30s' or milliseconds")


if TYPE_CHECKING:
    # What callers may pass; validation turns each into a timedelta.
    Duration = _dt.timedelta | str | int | float
else:
    Duration = Annotated[_dt.timedelta, pydantic.BeforeValidator(_duration)]


def _between(td: _dt.timedelta, low: _dt.timedelta, high: _dt.timedelta) -> _dt.timedelta:
    if not low <= td <= high:
        raise ValueError(f"must be between {format_duration(low)} and {format_duration(high)}")
    return td


# The per-instance state pydantic keeps; copied from an unvalidated instance (see ``_Opt``).
_MODEL_STATE = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")


class _Opt(pydantic.BaseModel):
    """An option. An invalid one is kept, unvalidated, with its ``problem``.

    Options are built in the arguments of ``create_function``, before the function exists; the
    function reports the problem (``FunctionConfigInvalidError`` naming the option, the field and
    the function), so a bad value still fails at definition time, with the whole story.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    _problem: str | None = pydantic.PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            unchecked = type(self).model_construct(**data)
            for name in _MODEL_STATE:
                object.__setattr__(self, name, getattr(unchecked, name))
            self._problem = f"{type(self).__name__}{describe_error(exc)}"

    @property
    def problem(self) -> str | None:
        """Why this option is invalid (``"Throttle.limit: must be at least 1"``), else ``None``."""
        return self._problem

    def to_wire(self) -> dict[str, Any]:
        raise NotImplementedError


def describe_error(exc: pydantic.ValidationError) -> str:
    """The first error as ``.field: message`` (``: message`` for a whole-model rule)."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f".{loc}: {message}" if loc else f": {message}"


def _wire(**fields: object) -> dict[str, Any]:
    return {
        k: format_duration(v) if isinstance(v, _dt.timedelta) else v
        for k, v in fields.items()
        if v is not None
    }


class TriggerEvent(_Opt):
    """Run when an event named ``event`` arrives (wildcards after ``/`` or ``.``), optionally filtered."""

    event: str
    expression: str | None = None

    @pydantic.field_validator("event")
    @classmethod
    def _check_event(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("event name must not be empty")
        if len(value) > 255:
            raise ValueError("event name must be at most 255 characters")
        return value

    _model: type[EventModel] | None = pydantic.PrivateAttr(default=None)

    @classmethod
    def typed(cls, model: type[EventModel], expression: str | None = None) -> TriggerEvent:
        """A trigger on ``model``'s event that types the handler's ``ctx.event.data`` as it."""
        trigger = cls(event=model.event_name, expression=expression)
        trigger._model = model
        return trigger

    @property
    def model(self) -> type[EventModel] | None:
        """The ``EventModel`` this trigger types the event with, if any."""
        return self._model

    def to_wire(self) -> dict[str, Any]:
        return _wire(event=self.event, expression=self.expression)


_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate(_MONTHS)},
    {d: i for i, d in enumerate(_DAYS)},
)
_CRON_ITEM = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(\d+))?$")


def _cron_value(text: str, field: int) -> int:
    names = _CRON_NAMES[field]
    value = names.get(text.upper()) if text.upper() in names else None
    if value is None:
        if not text.isdigit():
            raise ValueError(f"invalid value {text!r}")
        value = int(text)
    low, high = _CRON_RANGES[field]
    if not low <= value <= high:
        raise ValueError(f"value {value} out of range {low}-{high}")
    return value


def validate_cron(expr: str) -> None:
    """Check a 5-field cron expression with an optional ``TZ=``/``CRON_TZ=`` prefix."""
    body = expr.strip()
    if len(body) > 255:
        raise ValueError("cron must be at most 255 characters")
    if body.startswith(("TZ=", "CRON_TZ=")):
        zone, _, body = body.partition(" ")
        try:
            zoneinfo.ZoneInfo(zone.split("=", 1)[1])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone in {zone!r}") from None
    fields = body.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {expr!r} must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    labels = ("minute", "hour", "day-of-month", "month", "day-of-week")
    for index, field in enumerate(fields):
        for item in field.split(","):
            if item == "?" and index in (2, 4):
                continue
            match = _CRON_ITEM.match(item)
            if match is None:
                raise ValueError(f"cron {labels[index]} field {field!r} is invalid")
            try:
                if match.group(1) != "*":
                    for bound in match.group(1).split("-"):
                        _cron_value(bound, index)
                if match.group(2) is not None and int(match.group(2)) == 0:
                    raise ValueError("step must be positive")
            except ValueError as exc:
                raise ValueError(f"cron {labels[index]} field {field!r}: {exc}") from None


class TriggerCron(_Opt):
    """Run on a schedule: 5-field cron, optionally prefixed by ``TZ=Area/City``."""

    cron: str
    jitter: Duration | None = None

    @pydantic.field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        validate_cron(value)
        return value

    @pydantic.field_validator("jitter")
    @classmethod
    def _check_jitter(cls, value: _dt.timedelta | None) -> _dt.timedelta | None:
        if value is not None and value:
            _between(value, _dt.timedelta(seconds=1), _dt.timedelta(minutes=5))
        return value

    def to_wire(self) -> dict[str, Any]:
        return _wire(cron=self.cron, jitter=self.jitter)


class Batch(_Opt):
    """Deliver up to ``max_size`` events to one run, waiting at most ``timeout`` to fill it."""

    max_size: int
    timeout: Duration
    key: str | None = None
    if_exp: str | None = None

    @pydantic.field_validator("max_size")
    @classmethod
    def _check_size(cls, value: int) -> int:
        if value < 2:
            raise ValueError("must be at least 2")
        return value

    @pydantic.field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: _dt.timedelta) -> _dt.timedelta:
        return _between(value, _dt.timedelta(seconds=1), _dt.timedelta(seconds=60))

    def to_wire(self) -> dict[str, Any]:
        return _wire(maxSize=self.max_size, timeout=self.timeout, key=self.key) | _wire(
            **{"if": self.if_exp}
        )


class Cancel(_Opt):
    """Cancel a run when ``event`` arrives and ``if_exp`` holds (``event`` = trigger, ``async`` = it)."""

    event: str
    if_exp: str | None = None
    timeout: Duration | None = None

    def to_wire(self) -> dict[str, Any]:
        return _wire(event=self.event, timeout=self.timeout) | _wire(**{"if": self.if_exp})


class Concurrency(_Opt):
    """At most ``limit`` steps executing at once, per function or per evaluated ``key``."""

    limit: int
    key: str | None = None
    scope: Literal["fn", "env", "account"] | None = None

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @pydantic.model_validator(mode="after")
    def _scope_needs_key(self) -> Concurrency:
        if self.scope in ("env", "account") and not self.key:
            raise ValueError(f"scope {self.scope!r} requires a key")
        return self

    def to_wire(self) -> dict[str, Any]:
        return _wire(limit=self.limit, key=self.key, scope=self.scope)


class Debounce(_Opt):
    """Start one run, with the last event, once no event arrived for ``period`` (or at ``timeout``)."""

    period: Duration
    key: str | None = None
    timeout: Duration | None = None

    @pydantic.field_validator("period")
    @classmethod
    def _check_period(cls, value: _dt.timedelta) -> _dt.timedelta:
        return _between(value, _dt.timedelta(seconds=1), _dt.timedelta(days=7))

    def to_wire(self) -> dict[str, Any]:
        return _wire(period=self.period, key=self.key, timeout=self.timeout)


class Priority(_Opt):
    """An expression giving seconds (±43200) by which a run jumps ahead of queued work."""

    run: str

    def to_wire(self) -> dict[str, Any]:
        return {"run": self.run}


class RateLimit(_Opt):
    """Start at most ``limit`` runs per ``period`` (per ``key``); runs beyond it are skipped."""

    limit: int
    period: Duration
    key: str | None = None

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @pydantic.field_validator("period")
    @classmethod
    def _check_period(cls, value: _dt.timedelta) -> _dt.timedelta:
        return _between(value, _dt.timedelta(seconds=1), _dt.timedelta(hours=24))

    def to_wire(self) -> dict[str, Any]:
        return _wire(limit=self.limit, period=self.period, key=self.key)


class Throttle(_Opt):
    """Start at most ``limit`` runs per ``period`` (plus ``burst``); later starts are delayed."""

    limit: int
    period: Duration
    key: str | None = None
    burst: int | None = None

    @pydantic.field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @pydantic.field_validator("period")
    @classmethod
    def _check_period(cls, value: _dt.timedelta) -> _dt.timedelta:
        return _between(value, _dt.timedelta(seconds=1), _dt.timedelta(days=7))

    def to_wire(self) -> dict[str, Any]:
        return _wire(limit=self.limit, period=self.period, burst=self.burst, key=self.key)


class Timeouts(_Opt):
    """Cancel a run not started within ``start`` or not finished within ``finish``."""

    start: Duration | None = None
    finish: Duration | None = None

    def to_wire(self) -> dict[str, Any]:
        return _wire(start=self.start, finish=self.finish)


class Singleton(_Opt):
    """One run at a time per ``key``: new runs are skipped, or cancel the running one."""

    mode: Literal["skip", "cancel"]
    key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return _wire(key=self.key, mode=self.mode)
