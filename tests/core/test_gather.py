"""``asyncio.gather`` of step calls: planned together like ``group.parallel``, deterministically."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from inngest_mw_asgi import serve
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, TriggerEvent
from inngest_mw.memo import hash_step_id
from inngest_mw.testing import run

client = inngest_mw.Inngest(app_id="app", is_production=False)
TRIGGER = TriggerEvent(event="e/g")


@client.create_function(fn_id="pair", trigger=TRIGGER)
async def pair(ctx: Context) -> Any:
    a, b = await asyncio.gather(ctx.step.run("a", lambda: 1), ctx.step.run("b", lambda: 2))
    return a + b


async def _chain(ctx: Context) -> int:
    x = await ctx.step.run("x1", lambda: 10)
    return await ctx.step.run("x2", lambda: x + 1)


@client.create_function(fn_id="mixed", trigger=TRIGGER)
async def mixed(ctx: Context) -> Any:
    chained, _, c = await asyncio.gather(
        _chain(ctx), ctx.step.sleep("nap", "1s"), ctx.step.run("c", lambda: 5)
    )
    return chained + c


@client.create_function(fn_id="lonely", trigger=TRIGGER)
async def lonely(ctx: Context) -> Any:
    [only] = await asyncio.gather(ctx.step.run("only", lambda: "x"))
    return only


@pytest.fixture(scope="module")
def caller() -> Iterator[Caller]:
    with serve_asgi(serve(client, [pair, mixed, lonely])) as url:
        yield Caller(url + "/api/inngest")


def test_gathered_new_steps_are_planned_together(caller: Caller) -> None:
    res = caller.call("app-pair", call_body())
    assert res.status_code == 206
    assert [(op["op"], op["id"]) for op in res.json()] == [
        ("StepPlanned", hash_step_id("a")),
        ("StepPlanned", hash_step_id("b")),
    ]


def test_targeted_gathered_step_runs_alone(caller: Caller) -> None:
    res = caller.call("app-pair", call_body(disable_immediate=True), step_id=hash_step_id("b"))
    [op] = res.json()
    assert (op["op"], op["id"], op["data"]) == ("StepRun", hash_step_id("b"), 2)


def test_gathered_run_completes_when_driven_like_the_executor(caller: Caller) -> None:
    res, trace = caller.run_to_completion("app-pair")
    assert (res.status_code, res.json()) == (200, 3)
    assert trace == ["StepPlanned:a", "StepPlanned:b", "StepRun:a", "StepRun:b"]


def test_gather_of_a_chain_a_sleep_and_a_step(caller: Caller) -> None:
    res, trace = caller.run_to_completion("app-mixed")
    assert (res.status_code, res.json()) == (200, 16)
    assert trace[:3] == ["StepPlanned:x1", "Sleep:nap", "StepPlanned:c"]
    assert "StepRun:x2" in trace


def test_a_single_gathered_step_runs_immediately(caller: Caller) -> None:
    [op] = caller.call("app-lonely", call_body()).json()
    assert (op["op"], op["data"]) == ("StepRun", "x")


async def test_gather_leaves_no_pending_or_unretrieved_tasks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = await run(mixed)
    assert result.output == 16
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []
    assert "never retrieved" not in caplog.text
    assert "destroyed but it is pending" not in caplog.text
