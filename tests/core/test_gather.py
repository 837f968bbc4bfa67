"""``asyncio.gather`` of step calls: planned together like ``group.parallel``, deterministically."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
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


class _SyncWrapStep(inngest_mw.MiddlewareSync):
    """A sync ``wrap_step`` with no async twin: every step of an async function crosses threads."""

    def wrap_step(self, call_next: Callable[[], Any], info: inngest_mw.StepInfo) -> Any:
        return call_next()


class _AsyncWrapStep(inngest_mw.Middleware):
    async def wrap_step(
        self, call_next: Callable[[], Awaitable[Any]], info: inngest_mw.StepInfo
    ) -> Any:
        await asyncio.sleep(0)
        return await call_next()


async def _late(ctx: Context) -> int:
    """A branch that awaits several times before it reaches its step."""
    for _ in range(5):
        await asyncio.sleep(0)
    return await ctx.step.run("b", lambda: 2)


MIXES: dict[str, list[Any]] = {
    "none": [],
    "sync-wrap-step": [_SyncWrapStep],
    "async-wrap-step": [_AsyncWrapStep],
    "sync-then-async": [_SyncWrapStep, _AsyncWrapStep],
}


@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("memoized", [(), ("a",), ("a", "c")])
async def test_a_three_way_gather_gives_one_request_shape_and_leaves_no_task(
    mix: str, memoized: tuple[str, ...]
) -> None:
    mw_client = inngest_mw.Inngest(app_id="app", is_production=False, middleware=MIXES[mix])

    @mw_client.create_function(fn_id="three", trigger=TRIGGER)
    async def three(ctx: Context) -> Any:
        a, b, c = await asyncio.gather(
            ctx.step.run("a", lambda: 1), _late(ctx), ctx.step.run("c", lambda: 3)
        )
        return a + b + c

    handler = inngest_mw.CommHandler(mw_client, [three])
    body = call_body(steps={hash_step_id(s): {"data": 0} for s in memoized})
    request = inngest_mw.CommRequest(
        "POST",
        "http://127.0.0.1/api/inngest?fnId=app-three&stepId=step",
        {},
        json.dumps(body).encode(),
    )
    shapes: Counter[bytes] = Counter()
    for _ in range(300):
        response = await handler.handle(request)
        assert response.status == 206, response.body
        shapes[response.body] += 1
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    [(shape, _count)] = shapes.items()
    # Branches are reported in the order they first called a step: "b" awaits before its step.
    expected = [s for s in ("a", "c", "b") if s not in memoized]
    ops = json.loads(shape)
    if len(expected) == 1:
        assert [(op["op"], op["displayName"]) for op in ops] == [("StepRun", expected[0])]
    else:
        assert [(op["op"], op["displayName"]) for op in ops] == [
            ("StepPlanned", s) for s in expected
        ]
