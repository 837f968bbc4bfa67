"""The testing toolkit: functions run in-process through the real step engine and pipeline."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import inngest_mw
from inngest_mw import (
    Context,
    ContextSync,
    Event,
    MiddlewareSync,
    StepMemos,
    TransformOutputResult,
    TriggerEvent,
)
from inngest_mw.pytest_plugin import Tester
from inngest_mw.testing import TIMEOUT, UnmockedStepError, run, run_sync

client = inngest_mw.Inngest(app_id="shop", is_production=False)
TRIGGER = TriggerEvent(event="shop/order")
calls: list[str] = []


@client.create_function(fn_id="everything", trigger=TRIGGER)
async def everything(ctx: Context) -> dict[str, Any]:
    price = await ctx.step.run("price", lambda qty: qty * 5, ctx.event.data["qty"])
    await ctx.step.sleep("cool-off", dt.timedelta(hours=1))
    paid = await ctx.step.wait_for_event(
        "paid", event="shop/paid", timeout="1d", if_exp="async.data.id == event.data.id"
    )
    label = await ctx.step.invoke_by_id(
        "label", function_id="print-label", data={"id": ctx.event.data["id"]}
    )
    ids = await ctx.step.send_event(
        "notify", Event(name="shop/shipped", data={"id": ctx.event.data["id"]})
    )
    a, b = await ctx.group.parallel(
        (lambda: ctx.step.run("a", lambda: "A"), lambda: ctx.step.run("b", lambda: "B"))
    )
    return {
        "price": price,
        "paid": None if paid is None else paid.data,
        "label": label,
        "ids": ids,
        "ab": a + b,
    }


@client.create_function(fn_id="everything-sync", trigger=TRIGGER)
def everything_sync(ctx: ContextSync) -> dict[str, Any]:
    price = ctx.step.run("price", lambda qty: qty * 5, ctx.event.data["qty"])
    ctx.step.sleep("cool-off", dt.timedelta(hours=1))
    paid = ctx.step.wait_for_event("paid", event="shop/paid", timeout="1d")
    label = ctx.step.invoke_by_id(
        "label", function_id="print-label", data={"id": ctx.event.data["id"]}
    )
    ids = ctx.step.send_event(
        "notify", Event(name="shop/shipped", data={"id": ctx.event.data["id"]})
    )
    a, b = ctx.group.parallel(
        (lambda: ctx.step.run("a", lambda: "A"), lambda: ctx.step.run("b", lambda: "B"))
    )
    return {
        "price": price,
        "paid": None if paid is None else paid.data,
        "label": label,
        "ids": ids,
        "ab": a + b,
    }


ORDER = {"name": "shop/order", "data": {"id": "o-1", "qty": 3}}
MOCKS: dict[str, object] = {
    "paid": Event(name="shop/paid", data={"id": "o-1", "amount": 15}),
    "label": "LBL-9",
}


@pytest.mark.parametrize("fn", [everything, everything_sync], ids=["async", "sync"])
async def test_every_step_kind_runs_with_mocks_for_the_outside_world(
    fn: inngest_mw.Function[Any],
) -> None:
    result = await run(fn, event=ORDER, mocks=MOCKS)
    assert result.succeeded
    assert result.output == {
        "price": 15,
        "paid": {"id": "o-1", "amount": 15},
        "label": "LBL-9",
        "ids": ["test-event-0"],
        "ab": "AB",
    }
    assert [(s.id, s.kind) for s in result.steps] == [
        ("price", "run"),
        ("cool-off", "sleep"),
        ("paid", "wait_for_event"),
        ("label", "invoke"),
        ("notify", "send_event"),
        ("a", "run"),
        ("b", "run"),
    ]
    assert result.step("price").input == [3]
    assert result.step("price").output == 15
    assert [e.name for e in result.events_sent] == ["shop/shipped"]
    assert "step start price" in result.trace


def test_run_sync_works_from_a_plain_test() -> None:
    result = run_sync(everything_sync, event=ORDER, mocks={"paid": TIMEOUT, "label": {"ok": True}})
    assert result.output["paid"] is None
    assert result.output["label"] == {"ok": True}


async def test_unmocked_wait_names_the_step_instead_of_hanging() -> None:
    with pytest.raises(UnmockedStepError, match="step 'paid' \\(wait_for_event\\) needs a mock"):
        await run(everything, event=ORDER, mocks={"label": 1})


async def test_unmocked_invoke_names_the_step() -> None:
    with pytest.raises(UnmockedStepError, match="step 'label' \\(invoke\\) needs a mock"):
        await run(everything, event=ORDER, mocks={"paid": TIMEOUT})


async def test_a_run_step_can_be_mocked_with_a_value_or_an_exception() -> None:
    result = await run(everything, event=ORDER, mocks={**MOCKS, "price": 99})
    assert result.output["price"] == 99
    assert result.step("price").mocked
    failing = await run(
        everything,
        event=ORDER,
        mocks={**MOCKS, "price": inngest_mw.NonRetriableError("no stock")},
        attempts=1,
    )
    assert failing.error is not None
    assert failing.error["message"] == "no stock"


async def test_an_invoke_mock_exception_raises_step_error_in_the_function() -> None:
    result = await run(
        everything,
        event=ORDER,
        mocks={"paid": TIMEOUT, "label": RuntimeError("printer offline")},
        attempts=1,
    )
    assert result.error is not None
    assert (result.error["name"], result.error["message"]) == ("RuntimeError", "printer offline")


flaky_calls: dict[str, int] = {}


def _flaky(key: str) -> str:
    flaky_calls[key] = flaky_calls.get(key, 0) + 1
    if flaky_calls[key] < 3:
        raise ConnectionError("try again")
    return "ok"


async def _failed(ctx: Context) -> str:
    return f"cleanup after {ctx.event.data['error']['message']}"


@client.create_function(fn_id="flaky", trigger=TRIGGER, retries=4, on_failure=_failed)
async def flaky(ctx: Context) -> str:
    return await ctx.step.run("call", _flaky, ctx.event.data["key"])


async def test_step_retries_then_succeeds() -> None:
    result = await run(flaky, event={"name": "shop/order", "data": {"key": "k1"}})
    assert result.output == "ok"
    assert result.step("call").attempts == 3
    assert result.on_failure is None


async def test_final_step_failure_fails_the_run_and_runs_on_failure() -> None:
    result = await run(flaky, event={"name": "shop/order", "data": {"key": "k2"}}, attempts=2)
    assert result.error is not None
    assert result.error["message"] == "try again"
    assert result.step("call").attempts == 2
    assert result.step("call").error is not None
    assert result.on_failure is not None
    assert result.on_failure.output == "cleanup after try again"


class Shout(MiddlewareSync):
    """Transforms input (event data) and output (function result)."""

    def transform_input(self, ctx: Any, function: Any, steps: StepMemos) -> None:
        ctx.event.data = {**ctx.event.data, "name": ctx.event.data["name"].upper()}

    def transform_output(self, result: TransformOutputResult) -> None:
        if result.has_output() and result.step is None:
            result.output = f"{result.output}!"


@client.create_function(fn_id="greet", trigger=TRIGGER, middleware=[Shout])
def greet(ctx: ContextSync) -> str:
    return ctx.step.run("greet", lambda: f"hello {ctx.event.data['name']}")


def test_middleware_transforms_input_and_output_as_in_production() -> None:
    result = run_sync(greet, event={"name": "shop/order", "data": {"name": "ada"}})
    assert result.output == "hello ADA!"


async def test_function_level_retry_counts_attempts() -> None:
    seen: list[int] = []

    @client.create_function(fn_id="attempts", trigger=TRIGGER, retries=2)
    async def attempts(ctx: Context) -> int:
        seen.append(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("boom")
        return ctx.attempt

    result = await run(attempts)
    assert (result.output, result.attempts, seen) == (2, 3, [0, 1, 2])


def test_fixture_exposes_the_toolkit(inngest_tester: Tester) -> None:
    result = inngest_tester.run_sync(greet, event={"name": "shop/order", "data": {"name": "bo"}})
    assert result.output == "hello BO!"
    assert inngest_tester.TIMEOUT is TIMEOUT


def test_demo_app_checkout_unit_test() -> None:
    from inngest_mw_dev import demo_app

    order = {"id": "A-1", "sku": "tea", "qty": 2, "price": 3.0, "email": "x@example.com"}
    result = run_sync(demo_app.checkout, event={"name": "shop/checkout", "data": order})
    assert result.output["charge"] == {"charged": 6.0, "currency": "EUR"}
    assert [e.name for e in result.events_sent] == ["shop/order.completed"]
    assert result.step("cool-off").kind == "sleep"
