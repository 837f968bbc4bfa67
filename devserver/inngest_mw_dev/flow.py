"""Flow-control settings of a function and the pure arithmetic behind them (keys, GCRA, priority).

Parsed once from the validated registration JSON so the machine never re-reads raw config; no
store access here, which keeps the rules testable without an engine (protocol notes §1b.3).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inngest_mw_dev.expr import Expression, ExpressionError, compile_expression
from inngest_mw_dev.timing import parse_seconds

__all__ = [
    "MAX_PRIORITY_SECONDS",
    "BatchRule",
    "ConcurrencyRule",
    "DebounceRule",
    "FlowConfig",
    "RateRule",
    "SingletonRule",
    "ThrottleRule",
    "evaluate_key",
    "gcra",
    "matches",
    "next_tat",
    "priority_seconds",
]

MAX_PRIORITY_SECONDS = 43_200
IDEMPOTENCY_PERIOD = 86_400.0


@dataclass(frozen=True, slots=True)
class ConcurrencyRule:
    limit: int
    key: str | None
    scope: str


@dataclass(frozen=True, slots=True)
class RateRule:
    limit: int
    period: float
    key: str | None
    label: str


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    limit: int
    period: float
    burst: int
    key: str | None


@dataclass(frozen=True, slots=True)
class DebounceRule:
    period: float
    timeout: float | None
    key: str | None


@dataclass(frozen=True, slots=True)
class BatchRule:
    max_size: int
    timeout: float
    key: str | None
    condition: str | None


@dataclass(frozen=True, slots=True)
class SingletonRule:
    mode: str
    key: str | None


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Every flow-control option of one function; absent options are None or empty."""

    concurrency: tuple[ConcurrencyRule, ...] = ()
    rate: RateRule | None = None
    throttle: ThrottleRule | None = None
    debounce: DebounceRule | None = None
    batch: BatchRule | None = None
    priority: str | None = None
    singleton: SingletonRule | None = None
    start_timeout: float | None = None
    finish_timeout: float | None = None

    @classmethod
    def from_config(cls, raw: Mapping[str, object]) -> FlowConfig:
        """Read the options of an already validated function config."""
        timeouts = _dict(raw.get("timeouts"))
        priority = _dict(raw.get("priority")).get("run")
        return cls(
            concurrency=_concurrency(raw.get("concurrency")),
            rate=_rate(raw),
            throttle=_throttle(_dict(raw.get("throttle"))),
            debounce=_debounce(_dict(raw.get("debounce"))),
            batch=_batch(_dict(raw.get("batchEvents"))),
            priority=priority if isinstance(priority, str) and priority else None,
            singleton=_singleton(_dict(raw.get("singleton"))),
            start_timeout=_seconds(timeouts.get("start")),
            finish_timeout=_seconds(timeouts.get("finish")),
        )


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _seconds(value: object) -> float | None:
    """A duration, or None when absent or unparsable (the server ignores invalid timeouts)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if not isinstance(value, str) or not value:
        return None
    try:
        seconds = parse_seconds(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _key(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _concurrency(value: object) -> tuple[ConcurrencyRule, ...]:
    if value is None:
        return ()
    items: list[object]
    if isinstance(value, dict) and ("fn" in value or "step" in value):
        items = []
        for scope in ("fn", "step"):
            group = value.get(scope) or []
            items.extend(group if isinstance(group, list) else [group])
    else:
        items = value if isinstance(value, list) else [value]
    rules = []
    for item in items:
        spec = {"limit": item} if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(spec, dict):
            continue
        limit = spec.get("limit")
        # A limit of 0 means "the account default" on the server: effectively unlimited here.
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            scope = spec.get("scope") or "fn"
            rules.append(ConcurrencyRule(limit, _key(spec.get("key")), str(scope)))
    return tuple(rules)


def _rate(raw: Mapping[str, object]) -> RateRule | None:
    idempotency = _key(raw.get("idempotency"))
    if idempotency:
        # The server turns idempotency into a rate limit of 1 per 24h, replacing any rateLimit.
        return RateRule(1, IDEMPOTENCY_PERIOD, idempotency, "idempotency")
    rate = _dict(raw.get("rateLimit"))
    limit, period = rate.get("limit"), _seconds(rate.get("period"))
    if not isinstance(limit, int) or limit <= 0 or period is None:
        return None
    return RateRule(limit, period, _key(rate.get("key")), "rate limit")


def _throttle(spec: dict[str, Any]) -> ThrottleRule | None:
    period = _seconds(spec.get("period"))
    if period is None:
        return None
    limit = spec.get("limit")
    burst = spec.get("burst")
    return ThrottleRule(
        limit=limit if isinstance(limit, int) and limit > 0 else 1,
        period=period,
        burst=burst if isinstance(burst, int) and burst > 0 else 1,
        key=_key(spec.get("key")),
    )


def _debounce(spec: dict[str, Any]) -> DebounceRule | None:
    period = _seconds(spec.get("period"))
    if period is None:
        return None
    return DebounceRule(period, _seconds(spec.get("timeout")), _key(spec.get("key")))


def _batch(spec: dict[str, Any]) -> BatchRule | None:
    size, timeout = spec.get("maxSize"), _seconds(spec.get("timeout"))
    if not isinstance(size, int) or size < 2 or timeout is None:
        return None
    return BatchRule(size, timeout, _key(spec.get("key")), _key(spec.get("if")))


def _singleton(spec: dict[str, Any]) -> SingletonRule | None:
    mode = spec.get("mode")
    if mode not in ("skip", "cancel"):
        return None
    return SingletonRule(str(mode), _key(spec.get("key")))


@functools.lru_cache(maxsize=1_000)
def _compiled(source: str) -> Expression:
    return compile_expression(source)


def _evaluate(source: str, event: Mapping[str, Any]) -> object:
    """The expression's value for ``event``; an evaluation error counts as null, as on the server."""
    try:
        return _compiled(source).evaluate({"event": event})
    except ExpressionError:
        return None


def evaluate_key(source: str | None, event: Mapping[str, Any]) -> str:
    """A key expression's value as a string ("" without a key); non-strings are JSON-rendered."""
    if source is None:
        return ""
    value = _evaluate(source, event)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def matches(source: str | None, event: Mapping[str, Any]) -> bool:
    """Whether a boolean condition (``batchEvents.if``) holds; no condition always holds."""
    return source is None or _evaluate(source, event) is True


def priority_seconds(source: str | None, event: Mapping[str, Any]) -> int:
    """``priority.run`` for ``event``: whole seconds clamped to ±12h; 0 when not a number."""
    value = _evaluate(source, event) if source else 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(-MAX_PRIORITY_SECONDS, min(MAX_PRIORITY_SECONDS, int(value)))


def gcra(tat: float | None, now: float, *, limit: int, period: float, burst: int) -> float:
    """Earliest time one more start conforms to a GCRA of ``limit`` per ``period``.

    ``tat`` is the stored theoretical arrival time; ``burst`` starts may go back to back. The
    caller stores ``max(tat, at) + period / limit`` as the new TAT once it admits a start.
    """
    interval = period / limit
    tolerance = interval * (burst - 1)
    return max(now, (tat if tat is not None else now) - tolerance)


def next_tat(tat: float | None, at: float, *, limit: int, period: float) -> float:
    """The theoretical arrival time after admitting a start at ``at``."""
    return max(tat if tat is not None else at, at) + period / limit
