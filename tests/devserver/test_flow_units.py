"""Flow-control arithmetic and config reading without an engine: GCRA, keys, priority, render."""

from __future__ import annotations

from inngest_mw_dev.flow import (
    FlowConfig,
    evaluate_key,
    gcra,
    matches,
    next_tat,
    priority_seconds,
)
from inngest_mw_dev.render import describe


def admitted(count: int, *, limit: int, period: float, burst: int) -> list[float]:
    """Start times GCRA gives ``count`` requests arriving together at t=0."""
    tat: float | None = None
    out = []
    for _ in range(count):
        at = gcra(tat, 0.0, limit=limit, period=period, burst=burst)
        tat = next_tat(tat, at, limit=limit, period=period)
        out.append(at)
    return out


def test_gcra_with_burst_equal_to_limit_allows_the_limit_at_once() -> None:
    assert admitted(4, limit=3, period=60, burst=3) == [0, 0, 0, 20]


def test_gcra_without_burst_spreads_starts_evenly_over_the_period() -> None:
    assert admitted(4, limit=2, period=10, burst=1) == [0, 5, 10, 15]


def test_idempotency_becomes_a_one_per_day_rate_limit_replacing_rate_limit() -> None:
    flow = FlowConfig.from_config(
        {"idempotency": "event.data.id", "rateLimit": {"limit": 5, "period": "1m"}}
    )
    assert flow.rate is not None
    assert (flow.rate.limit, flow.rate.period, flow.rate.key) == (1, 86_400.0, "event.data.id")


def test_config_reads_every_option() -> None:
    flow = FlowConfig.from_config(
        {
            "concurrency": [{"limit": 2}, {"limit": 1, "key": "event.data.k", "scope": "env"}],
            "throttle": {"limit": 0, "period": "1m"},
            "debounce": {"period": "5s", "timeout": "1m", "key": "event.data.k"},
            "batchEvents": {"maxSize": 3, "timeout": "2s", "if": "event.data.ok"},
            "priority": {"run": "event.data.p"},
            "singleton": {"mode": "cancel"},
            "timeouts": {"start": "10s", "finish": "bogus"},
        }
    )
    assert [(c.limit, c.scope) for c in flow.concurrency] == [(2, "fn"), (1, "env")]
    assert flow.throttle is not None
    assert (flow.throttle.limit, flow.throttle.burst) == (1, 1)
    assert flow.debounce is not None
    assert flow.debounce.timeout == 60.0
    assert flow.batch is not None
    assert flow.batch.condition == "event.data.ok"
    assert flow.singleton is not None
    assert flow.singleton.key is None
    assert (flow.start_timeout, flow.finish_timeout) == (10.0, None)  # invalid ones are ignored


def test_keys_are_strings_and_missing_values_share_one_key() -> None:
    event = {"data": {"s": "a", "n": 3, "flag": True}}
    assert evaluate_key("event.data.s", event) == "a"
    assert evaluate_key("event.data.n", event) == "3"
    assert evaluate_key("event.data.flag", event) == "true"
    assert evaluate_key(None, event) == ""
    assert evaluate_key("event.data.missing", event) == evaluate_key("event.data.gone", event)


def test_priority_is_clamped_to_twelve_hours_and_non_numbers_are_zero() -> None:
    assert priority_seconds("event.data.p", {"data": {"p": 10**9}}) == 43_200
    assert priority_seconds("event.data.p", {"data": {"p": -(10**9)}}) == -43_200
    assert priority_seconds("event.data.p", {"data": {"p": "high"}}) == 0


def test_batch_condition_needs_a_true_value() -> None:
    assert matches("event.data.ok", {"data": {"ok": True}})
    assert not matches("event.data.ok", {"data": {"ok": 1}})
    assert matches(None, {})


def test_flow_decisions_read_clearly_in_the_cli() -> None:
    assert describe("skipped", None, {"reason": "rate limit: 3 run(s) per 60s reached"}) == (
        "skipped: rate limit: 3 run(s) per 60s reached"
    )
    assert describe("queued", None, {"event": "a/b", "events": 5, "reason": "batch full"}) == (
        "queued by a/b (5 events): batch full"
    )
    assert describe("delayed", None, {"reason": "throttle: 1 start(s) per 1s"}) == (
        "delayed: throttle: 1 start(s) per 1s"
    )
    assert describe("concurrency_limited", "work", {"reason": "concurrency: x (limit 2)"}) == (
        'step "work" waiting for capacity: concurrency: x (limit 2)'
    )
