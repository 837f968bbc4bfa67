"""Typed events: an ``EventModel`` declares an event's name and data schema; sends are checked
before anything leaves the process, a trigger on the model types ``ctx.event.data``, and
``wait_for_event`` returns the typed event."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import serve_asgi

import inngest_mw
from inngest_mw import (
    Context,
    ContextSync,
    Event,
    EventDataInvalidError,
    EventModel,
    TriggerCron,
)
from inngest_mw.errors import FunctionConfigInvalidError
from inngest_mw.testing import TIMEOUT, run_sync


class OrderPaid(EventModel, name="typed/order.paid"):
    order: str
    amount: int = 0


class Refund(EventModel, name="typed/refund"):
    order: str


client = inngest_mw.Inngest(app_id="typed", is_production=False)


@client.create_function(fn_id="receipt", trigger=OrderPaid)
async def receipt(ctx: Context[OrderPaid]) -> str:
    paid: OrderPaid = ctx.event.data  # typed: mypy checks this line
    return f"{paid.order}:{paid.amount}"


@client.create_function(fn_id="receipt-sync", trigger=OrderPaid.trigger(expression="true"))
def receipt_sync(ctx: ContextSync[OrderPaid]) -> str:
    return f"{ctx.event.data.order}:{ctx.event.data.amount}"


@client.create_function(fn_id="await-refund", trigger=OrderPaid)
async def await_refund(ctx: Context[OrderPaid]) -> Any:
    got = await ctx.step.wait_for_event("refund", event=Refund, timeout="1d")
    return None if got is None else got.data.order


@client.create_function(fn_id="await-refund-sync", trigger=OrderPaid)
def await_refund_sync(ctx: ContextSync[OrderPaid]) -> Any:
    got = ctx.step.wait_for_event("refund", event=Refund, timeout="1d")
    return None if got is None else got.data.order


PAID = {"name": "typed/order.paid", "data": {"order": "A-1", "amount": 3}}


@pytest.mark.parametrize("fn", [receipt, receipt_sync], ids=["async", "sync"])
def test_a_trigger_on_a_model_gives_the_handler_typed_data(fn: inngest_mw.Function[Any]) -> None:
    assert run_sync(fn, event=PAID).output == "A-1:3"


@pytest.mark.parametrize("fn", [receipt, receipt_sync], ids=["async", "sync"])
def test_a_trigger_event_that_does_not_validate_fails_at_once_naming_the_field(
    fn: inngest_mw.Function[Any],
) -> None:
    result = run_sync(fn, event={"name": "typed/order.paid", "data": {"amount": "lots"}})
    assert result.error is not None
    assert result.attempts == 1  # non-retriable: the same event would fail the same way
    assert result.error["name"] == "EventValidationError"
    message = result.error["message"]
    assert "data.order: Field required" in message
    assert "data.amount: Input should be a valid integer" in message


@pytest.mark.parametrize("fn", [await_refund, await_refund_sync], ids=["async", "sync"])
def test_wait_for_event_on_a_model_returns_the_typed_event(fn: inngest_mw.Function[Any]) -> None:
    refund = Event(name="typed/refund", data={"order": "A-1"})
    assert run_sync(fn, event=PAID, mocks={"refund": refund}).output == "A-1"
    assert run_sync(fn, event=PAID, mocks={"refund": TIMEOUT}).output is None
    bad = run_sync(fn, event=PAID, mocks={"refund": Event(name="typed/refund", data={})})
    assert bad.error is not None
    assert "data.order: Field required" in bad.error["message"]


def test_a_model_trigger_cannot_be_mixed_with_other_triggers() -> None:
    with pytest.raises(FunctionConfigInvalidError, match="only triggers on that one model"):
        client.create_function(fn_id="mixed", trigger=[OrderPaid, TriggerCron(cron="* * * * *")])
    with pytest.raises(FunctionConfigInvalidError, match=r"\(OrderPaid, Refund\)"):
        client.create_function(fn_id="two", trigger=[OrderPaid, Refund])


def test_a_model_needs_a_name_and_one_model_per_name() -> None:
    with pytest.raises(TypeError, match="needs its event's name"):

        class Nameless(EventModel):
            x: int

    with pytest.raises(TypeError, match="already declared by OrderPaid"):

        class Impostor(EventModel, name="typed/order.paid"):
            y: int


class EventApi:
    """A stand-in event API that keeps every body it receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[Any] = []

    def app(self) -> Starlette:
        async def ingest(request: Request) -> Response:
            body = await request.json()
            with self.lock:
                self.bodies.append(body)
            return JSONResponse({"ids": [f"id-{i}" for i in range(len(body))], "status": 200})

        return Starlette(routes=[Route("/e/{key}", ingest, methods=["POST"])])


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[EventApi, inngest_mw.Inngest]]:
    events = EventApi()
    with serve_asgi(events.app()) as base:
        yield (
            events,
            inngest_mw.Inngest(app_id="sender", is_production=False, event_api_base_url=base),
        )


def test_a_model_instance_is_sent_as_its_event(api: tuple[EventApi, inngest_mw.Inngest]) -> None:
    events, sender = api
    assert sender.send_sync(OrderPaid(order="B-2", amount=5)) == ["id-0"]
    sent = events.bodies[-1]
    assert [(e["name"], e["data"]) for e in sent] == [
        ("typed/order.paid", {"order": "B-2", "amount": 5})
    ]


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_an_invalid_event_of_a_declared_name_is_refused_before_anything_is_sent(
    api: tuple[EventApi, inngest_mw.Inngest], colour: str
) -> None:
    events, sender = api
    before = len(events.bodies)
    bad = [Event(name="typed/refund", data={"order": "ok"}), Event(name="typed/order.paid")]
    send = sender.send_sync if colour == "sync" else lambda b: asyncio.run(sender.send(b))
    with pytest.raises(
        EventDataInvalidError, match=r"'typed/order.paid'.*data.order: Field required"
    ):
        send(bad)
    assert len(events.bodies) == before  # not even the valid first event left the process


def test_send_hooks_see_a_model_instance_as_an_event_with_plain_data(
    api: tuple[EventApi, inngest_mw.Inngest],
) -> None:
    events, sender = api
    seen: list[object] = []

    class Peek(inngest_mw.MiddlewareSync):
        def before_send_events(self, batch: list[Event]) -> None:
            seen.extend(e.data.get("order") for e in batch)

    sender.add_middleware(Peek)
    sender.send_sync([OrderPaid(order="C-3"), Event(name="typed/refund", data={"order": "C-4"})])
    assert seen == ["C-3", "C-4"]
    assert events.bodies[-1][0]["data"] == {"order": "C-3", "amount": 0}
