"""Flow control end to end: inngest-mw apps over real HTTP, each option observably enforced.

Every test fails if the engine ignores the option: the app measures what it saw (steps in
flight, the events a run received) and the engine's run API shows skipped/cancelled runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from engine_support import AppServer, get_run, poll, runs_for_event, send, sync, wait_run
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, TriggerEvent


class InFlight:
    """Counts step handlers executing at once, overall and per key, keeping the maxima."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: defaultdict[str, int] = defaultdict(int)
        self.peak: defaultdict[str, int] = defaultdict(int)
        self.started: list[str] = []

    async def hold(self, keys: list[str], seconds: float, label: str = "") -> int:
        """Occupy ``keys`` for ``seconds``; returns how many held the first key on entry."""
        with self.lock:
            self.started.append(label)
            for key in keys:
                self.now[key] += 1
                self.peak[key] = max(self.peak[key], self.now[key])
            entered = self.now[keys[0]]
        try:
            await asyncio.sleep(seconds)
        finally:
            with self.lock:
                for key in keys:
                    self.now[key] -= 1
        return entered


def build(client: inngest_mw.Inngest, flight: InFlight) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="conc", trigger=TriggerEvent(event="f/conc"), concurrency=2)
    async def conc(ctx: Context) -> None:
        await ctx.step.run("work", lambda: flight.hold(["conc"], 0.2))

    @create(
        fn_id="conc-key",
        trigger=TriggerEvent(event="f/conc-key"),
        concurrency=[inngest_mw.Concurrency(limit=1, key="event.data.k")],
    )
    async def conc_key(ctx: Context) -> None:
        key = str(ctx.event.data["k"])
        await ctx.step.run("work", lambda: flight.hold(["conc-key", f"conc-key:{key}"], 0.3))

    @create(
        fn_id="throttled",
        trigger=TriggerEvent(event="f/throttle"),
        throttle=inngest_mw.Throttle(limit=1, period="1s"),
    )
    async def throttled(ctx: Context) -> str:
        return "ok"

    @create(
        fn_id="rated",
        trigger=TriggerEvent(event="f/rate"),
        rate_limit=inngest_mw.RateLimit(limit=3, period="1m"),
    )
    async def rated(ctx: Context) -> str:
        return "ok"

    @create(
        fn_id="rated-key",
        trigger=TriggerEvent(event="f/rate-key"),
        rate_limit=inngest_mw.RateLimit(limit=1, period="1m", key="event.data.k"),
    )
    async def rated_key(ctx: Context) -> str:
        return "ok"

    @create(fn_id="idem", trigger=TriggerEvent(event="f/idem"), idempotency="event.data.order")
    async def idem(ctx: Context) -> str:
        return "ok"

    @create(
        fn_id="debounced",
        trigger=TriggerEvent(event="f/debounce"),
        debounce=inngest_mw.Debounce(period="1s", key="event.data.k"),
    )
    async def debounced(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    @create(
        fn_id="batched",
        trigger=TriggerEvent(event="f/batch"),
        batch_events=inngest_mw.Batch(max_size=5, timeout="1s", if_exp="event.data.i >= 0"),
    )
    async def batched(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    @create(
        fn_id="prio",
        trigger=TriggerEvent(event="f/prio"),
        concurrency=1,
        priority=inngest_mw.Priority(run="event.data.p"),
    )
    async def prio(ctx: Context) -> None:
        name, seconds = str(ctx.event.data["name"]), float(ctx.event.data["hold"])
        await ctx.step.run("work", lambda: flight.hold(["prio"], seconds, name))

    @create(
        fn_id="single-skip",
        trigger=TriggerEvent(event="f/single-skip"),
        singleton=inngest_mw.Singleton(key="event.data.k", mode="skip"),
    )
    async def single_skip(ctx: Context) -> None:
        await ctx.step.sleep("nap", "1s")

    @create(
        fn_id="single-cancel",
        trigger=TriggerEvent(event="f/single-cancel"),
        singleton=inngest_mw.Singleton(mode="cancel"),
    )
    async def single_cancel(ctx: Context) -> str:
        await ctx.step.sleep("nap", str(ctx.event.data["nap"]))
        return "done"

    @create(
        fn_id="late-start",
        trigger=TriggerEvent(event="f/late-start"),
        concurrency=1,
        timeouts=inngest_mw.Timeouts(start="1s"),
    )
    async def late_start(ctx: Context) -> str:
        await ctx.step.run("work", lambda: flight.hold(["late-start"], 2.0))
        return "done"

    @create(
        fn_id="slow-finish",
        trigger=TriggerEvent(event="f/slow-finish"),
        timeouts=inngest_mw.Timeouts(finish="1s"),
    )
    async def slow_finish(ctx: Context) -> str:
        await ctx.step.sleep("nap", "30s")
        return "not reached"

    return [
        conc,
        conc_key,
        throttled,
        rated,
        rated_key,
        idem,
        debounced,
        batched,
        prio,
        single_skip,
        single_cancel,
        late_start,
        slow_finish,
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, InFlight]]:
    flight = InFlight()
    db = tmp_path_factory.mktemp("flow") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="flow",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        with AppServer(serve(client, build(client, flight))) as app:
            sync(app)
            yield engine.url, flight


def only_run(url: str, event_id: str) -> dict[str, Any]:
    (run,) = runs_for_event(url, event_id)
    return wait_run(url, run["run_id"])


def history_types(url: str, run_id: str) -> list[str]:
    return [h["type"] for h in wait_run(url, run_id)["history"]]


def test_concurrency_limit_caps_steps_executing_at_once(env: tuple[str, InFlight]) -> None:
    url, flight = env
    ids = send(url, [{"name": "f/conc", "data": {"i": i}} for i in range(20)])
    runs = [only_run(url, event_id) for event_id in ids]
    assert {r["status"] for r in runs} == {"Completed"}
    assert flight.peak["conc"] == 2
    assert any("concurrency_limited" in history_types(url, r["run_id"]) for r in runs)


def test_concurrency_key_partitions_the_limit(env: tuple[str, InFlight]) -> None:
    url, flight = env
    events = [{"name": "f/conc-key", "data": {"k": k}} for k in "ababab"]
    runs = [only_run(url, event_id) for event_id in send(url, events)]
    assert {r["status"] for r in runs} == {"Completed"}
    assert flight.peak["conc-key:a"] == 1
    assert flight.peak["conc-key:b"] == 1
    assert flight.peak["conc-key"] == 2  # the two keys progressed side by side


def test_throttle_delays_starts_without_dropping_any(env: tuple[str, InFlight]) -> None:
    url, _ = env
    ids = send(url, [{"name": "f/throttle", "data": {}} for _ in range(4)])
    runs = [only_run(url, event_id) for event_id in ids]
    assert {r["status"] for r in runs} == {"Completed"}
    starts = sorted(r["run_started_at"] for r in runs)
    span = _seconds_between(starts[0], starts[-1])
    assert span >= 2.5  # one start per second: the 4th cannot start before ~3s
    assert sum("delayed" in [h["type"] for h in r["history"]] for r in runs) == 3


def test_rate_limit_starts_the_limit_and_records_the_rest_as_skipped(
    env: tuple[str, InFlight],
) -> None:
    url, _ = env
    ids = send(url, [{"name": "f/rate", "data": {"i": i}} for i in range(10)])
    runs = [only_run(url, event_id) for event_id in ids]
    assert [r["status"] for r in runs].count("Completed") == 3
    skipped = [r for r in runs if r["status"] == "Skipped"]
    assert len(skipped) == 7
    entry = skipped[0]["history"][-1]
    assert entry["type"] == "skipped"
    assert "rate limit" in entry["reason"]


def test_rate_limit_key_partitions_the_limit(env: tuple[str, InFlight]) -> None:
    url, _ = env
    ids = send(url, [{"name": "f/rate-key", "data": {"k": k}} for k in "aabb"])
    assert [only_run(url, event_id)["status"] for event_id in ids] == [
        "Completed",
        "Skipped",
        "Completed",
        "Skipped",
    ]


def test_idempotency_key_runs_once_per_key(env: tuple[str, InFlight]) -> None:
    url, _ = env
    orders = ["o-1", "o-1", "o-2", "o-1"]
    ids = send(url, [{"name": "f/idem", "data": {"order": o}} for o in orders])
    statuses = [only_run(url, event_id)["status"] for event_id in ids]
    assert statuses == ["Completed", "Skipped", "Completed", "Skipped"]
    skipped = only_run(url, ids[1])
    assert "idempotency" in skipped["history"][-1]["reason"]


def test_debounce_starts_one_run_with_the_last_event(env: tuple[str, InFlight]) -> None:
    url, _ = env
    ids = send(url, [{"name": "f/debounce", "data": {"i": i, "k": "x"}} for i in range(5)])
    other = send(url, {"name": "f/debounce", "data": {"i": 99, "k": "y"}})
    run = only_run(url, ids[-1])
    assert run["status"] == "Completed"
    assert run["output"] == [4]
    assert only_run(url, other[0])["output"] == [99]  # another key debounces on its own
    for event_id in ids[:-1]:
        assert runs_for_event(url, event_id, count=0) == []
    assert "debounced 5 event(s)" in run["history"][0]["reason"]


def test_batch_delivers_full_batches_then_the_rest_at_the_timeout(
    env: tuple[str, InFlight],
) -> None:
    url, _ = env
    ids = send(url, [{"name": "f/batch", "data": {"i": i}} for i in range(12)])
    outputs = [only_run(url, ids[first])["output"] for first in (0, 5, 10)]
    assert outputs == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    for event_id in ids:
        if ids.index(event_id) not in (0, 5, 10):
            assert runs_for_event(url, event_id, count=0) == []


def test_batch_if_runs_rejected_events_alone(env: tuple[str, InFlight]) -> None:
    url, _ = env
    ids = send(url, [{"name": "f/batch", "data": {"i": i}} for i in (100, -1, 101)])
    assert only_run(url, ids[1])["output"] == [-1]
    assert only_run(url, ids[0])["output"] == [100, 101]


def test_priority_lets_a_later_run_start_first(env: tuple[str, InFlight]) -> None:
    url, flight = env
    # The blocker holds the only slot long enough for all later events to be queued behind it.
    send(url, {"name": "f/prio", "data": {"p": 0, "name": "blocker", "hold": 1.0}})
    poll(lambda: list(flight.started), lambda s: "blocker" in s, what="the blocker to start")
    low = send(
        url,
        [{"name": "f/prio", "data": {"p": 0, "name": f"low{i}", "hold": 0.1}} for i in range(3)],
    )
    high = send(url, {"name": "f/prio", "data": {"p": 600, "name": "high", "hold": 0.1}})
    for event_id in [*low, *high]:
        assert only_run(url, event_id)["status"] == "Completed"
    order = [name for name in flight.started if name in ("high", "low0", "low1", "low2")]
    assert order[0] == "high", order


def test_singleton_skip_skips_a_run_while_one_with_the_key_runs(
    env: tuple[str, InFlight],
) -> None:
    url, _ = env
    [first] = send(url, {"name": "f/single-skip", "data": {"k": "a"}})
    poll(lambda: runs_for_event(url, first), lambda r: r[0]["status"] == "Running")
    second, other = send(url, [{"name": "f/single-skip", "data": {"k": k}} for k in "ab"])
    skipped = only_run(url, second)
    assert skipped["status"] == "Skipped"
    assert "singleton" in skipped["history"][-1]["reason"]
    assert only_run(url, other)["status"] == "Completed"
    assert only_run(url, first)["status"] == "Completed"


def test_singleton_cancel_replaces_the_running_run(env: tuple[str, InFlight]) -> None:
    url, _ = env
    [first] = send(url, {"name": "f/single-cancel", "data": {"nap": "30s"}})
    run_id = runs_for_event(url, first)[0]["run_id"]
    poll(
        lambda: history_types_now(url, run_id),
        lambda types: "sleeping" in types,
        what="the first run to sleep",
    )
    [second] = send(url, {"name": "f/single-cancel", "data": {"nap": "1s"}})
    assert only_run(url, second)["output"] == "done"
    cancelled = only_run(url, first)
    assert cancelled["status"] == "Cancelled"
    assert "singleton" in cancelled["error"]["message"]


def test_start_timeout_cancels_a_run_that_could_not_start(env: tuple[str, InFlight]) -> None:
    url, _ = env
    first, second = send(url, [{"name": "f/late-start", "data": {}} for _ in range(2)])
    assert only_run(url, first)["status"] == "Completed"
    late = only_run(url, second)
    assert late["status"] == "Cancelled"
    assert "timeouts.start" in late["error"]["message"]


def test_finish_timeout_cancels_a_run_still_going(env: tuple[str, InFlight]) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "f/slow-finish", "data": {}})
    run = only_run(url, event_id)
    assert run["status"] == "Cancelled"
    assert "timeouts.finish" in run["error"]["message"]


def history_types_now(url: str, run_id: str) -> list[str]:
    return [h["type"] for h in get_run(url, run_id)["history"]]


def _seconds_between(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
