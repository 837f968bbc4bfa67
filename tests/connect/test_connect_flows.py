"""Connect workers with no HTTP server run multi-step flows on the embedded engine's gateway."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from connect_support import WorkerThread, wait_workers, workers_of
from engine_support import get_json, poll, run_for_event, runs_for_event, send, wait_run, wait_step
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(
        tmp_path / "engine.db", port=0, connect_port=0, retry_base=0.05, tick=0.02
    ) as running:
        yield running


def client_for(engine: EngineThread, app_id: str = "shop") -> inngest_mw.Inngest:
    return inngest_mw.Inngest(
        app_id=app_id, is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
    )


class Calls:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.threads: set[str] = set()

    def hit(self, key: str) -> int:
        with self.lock:
            self.counts[key] += 1
            self.threads.add(threading.current_thread().name)
            return self.counts[key]


def checkout_functions(client: inngest_mw.Inngest, calls: Calls) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="checkout", trigger=TriggerEvent(event="shop/checkout"))
    async def checkout(ctx: Context) -> Any:
        order = ctx.event.data["order"]
        total = await ctx.step.run("price", lambda: calls.hit(f"{order}:price") and 42)
        await ctx.step.sleep("cool-off", "1s")
        paid = await ctx.step.wait_for_event(
            "payment",
            event="shop/paid",
            if_exp="event.data.order == async.data.order",
            timeout="30s",
        )
        receipt = await ctx.step.run("receipt", lambda: calls.hit(f"{order}:receipt") and "sent")
        return {
            "total": total,
            "paid": None if paid is None else paid.data["amount"],
            "receipt": receipt,
        }

    @client.create_function(fn_id="checkout-sync", trigger=TriggerEvent(event="shop/checkout-sync"))
    def checkout_sync(ctx: ContextSync) -> Any:
        order = ctx.event.data["order"]
        total = ctx.step.run("price", lambda: calls.hit(f"{order}:price") and 7)
        ctx.step.sleep("cool-off", "1s")
        paid = ctx.step.wait_for_event(
            "payment",
            event="shop/paid",
            if_exp="event.data.order == async.data.order",
            timeout="30s",
        )
        receipt = ctx.step.run("receipt", lambda: calls.hit(f"{order}:receipt") and "sent")
        return {
            "total": total,
            "paid": None if paid is None else paid.data["amount"],
            "receipt": receipt,
        }

    return [checkout, checkout_sync]


@pytest.mark.parametrize(
    ("event", "total"), [("shop/checkout", 42), ("shop/checkout-sync", 7)], ids=["async", "sync"]
)
def test_a_worker_with_no_http_server_runs_a_flow_with_a_sleep_and_a_wait(
    engine: EngineThread, event: str, total: int
) -> None:
    calls = Calls()
    client = client_for(engine)
    with WorkerThread(client, checkout_functions(client, calls), instance_id="worker-a"):
        (worker,) = wait_workers(engine.url, "shop", 1)
        assert worker["instance_id"] == "worker-a"
        (event_id,) = send(engine.url, {"name": event, "data": {"order": "o-1"}})
        (run,) = runs_for_event(engine.url, event_id)
        wait_step(engine.url, run["run_id"], "payment", "Waiting", timeout=30)
        send(engine.url, {"name": "shop/paid", "data": {"order": "o-1", "amount": 10}})
        done = wait_run(engine.url, run["run_id"], timeout=30)
    assert done["status"] == "Completed", done
    assert done["output"] == {"total": total, "paid": 10, "receipt": "sent"}
    # Every step ran exactly once, over connect.
    assert calls.counts == Counter({"o-1:price": 1, "o-1:receipt": 1})
    if event.endswith("-sync"):
        # A def function runs in a worker thread, never on the connection's loop.
        assert all(name != "connect-worker" for name in calls.threads), calls.threads


def test_the_app_is_listed_as_a_connect_app_with_its_worker(engine: EngineThread) -> None:
    calls = Calls()
    client = client_for(engine)
    with WorkerThread(client, checkout_functions(client, calls), instance_id="lister"):
        wait_workers(engine.url, "shop", 1)
        (app,) = [a for a in get_json(f"{engine.url}/v1/apps")["data"] if a["name"] == "shop"]
        assert app["url"] == "ws://connect?app_name=shop"
        assert app["framework"] == "connect"
        assert sorted(app["functions"]) == ["shop-checkout", "shop-checkout-sync"]
        assert app["workers"][0]["instance_id"] == "lister"
        page = httpx.get(f"{engine.url}/apps", timeout=10).text
        assert "worker lister: ready, 0 in flight" in page
        assert "/fn/sync?url=ws" not in page  # a connect app syncs itself: no Resync button
    # The drained worker is gone from the list once it has disconnected.
    poll(lambda: workers_of(engine.url, "shop"), lambda ws: ws == [], what="the worker to leave")


def test_calls_are_spread_over_several_workers(engine: EngineThread) -> None:
    calls = Calls()
    client = client_for(engine)

    @client.create_function(fn_id="one", trigger=TriggerEvent(event="shop/one"))
    async def one(ctx: Context) -> str:
        def only() -> str:
            calls.hit(ctx.run_id)
            return "ok"

        return await ctx.step.run("only", only)

    with (
        WorkerThread(client, [one], instance_id="w1"),
        WorkerThread(client, [one], instance_id="w2"),
    ):
        wait_workers(engine.url, "shop", 2)
        ids = send(engine.url, [{"name": "shop/one", "data": {"i": i}} for i in range(12)])
        for event_id in ids:
            assert run_for_event(engine.url, event_id, timeout=30)["status"] == "Completed"
        served = {w["instance_id"]: w["served"] for w in workers_of(engine.url, "shop")}
    assert set(served) == {"w1", "w2"}
    assert all(count > 0 for count in served.values()), served
    assert sum(calls.counts.values()) == 12


def test_gateway_closing_moves_the_worker_to_a_new_connection_without_losing_its_call(
    engine: EngineThread,
) -> None:
    release, running = threading.Event(), threading.Event()
    client = client_for(engine)

    @client.create_function(fn_id="long", trigger=TriggerEvent(event="shop/long"))
    def long(ctx: ContextSync) -> str:
        def work() -> str:
            running.set()
            release.wait(30)
            return "kept"

        return ctx.step.run("work", work)

    gateway = engine.engine.connect
    assert gateway is not None
    with WorkerThread(client, [long], instance_id="mover"):
        (old,) = wait_workers(engine.url, "shop", 1)
        (first,) = send(engine.url, {"name": "shop/long", "data": {}})
        assert running.wait(15)
        (conn,) = gateway.workers("shop")
        engine.call(gateway.move(conn))
        # A new connection is ready while the old one, closing, still carries the call.
        (new,) = wait_workers(engine.url, "shop", 1)
        assert new["connection_id"] != old["connection_id"]
        assert [w["status"] for w in workers_of(engine.url, "shop")] == ["CLOSING", "READY"]
        release.set()
        assert run_for_event(engine.url, first, timeout=30)["output"] == "kept"
        # Once its call is done the worker closes the old connection.
        poll(
            lambda: [w["connection_id"] for w in workers_of(engine.url, "shop")],
            lambda ids: ids == [new["connection_id"]],
            what="the old connection to close",
        )
        (second,) = send(engine.url, {"name": "shop/long", "data": {}})
        assert run_for_event(engine.url, second, timeout=30)["output"] == "kept"


def test_a_blocked_def_step_does_not_hold_up_the_workers_other_calls(engine: EngineThread) -> None:
    """A ``def`` step blocks its thread until an ``async`` run on the same worker has run its
    step: were the def step on the connection's loop, that call could not arrive, and the def
    step would give up after 30 s and fail its run."""
    started, released = threading.Event(), threading.Event()
    client = client_for(engine)

    @client.create_function(fn_id="blocker", trigger=TriggerEvent(event="shop/block"), retries=0)
    def blocker(ctx: ContextSync) -> str:
        def hold() -> str:
            started.set()
            if not released.wait(30):
                raise RuntimeError("the other call never arrived while this step blocked")
            return "released"

        return ctx.step.run("hold", hold)

    @client.create_function(fn_id="quick", trigger=TriggerEvent(event="shop/quick"))
    async def quick(ctx: Context) -> str:
        def release() -> str:
            released.set()
            return "done"

        return await ctx.step.run("release", release)

    with WorkerThread(client, [blocker, quick], instance_id="one-worker"):
        wait_workers(engine.url, "shop", 1)
        (blocked_event,) = send(engine.url, {"name": "shop/block", "data": {}})
        assert started.wait(30), "the blocking step never started"
        (quick_event,) = send(engine.url, {"name": "shop/quick", "data": {}})
        quick_run = run_for_event(engine.url, quick_event, timeout=30)
        blocked_run = run_for_event(engine.url, blocked_event, timeout=30)
    assert (quick_run["status"], quick_run["output"]) == ("Completed", "done")
    assert (blocked_run["status"], blocked_run["output"]) == ("Completed", "released")
