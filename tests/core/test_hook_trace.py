"""The hook trace: what the middleware did in one request, sent back only when a server asks.

Each request goes through the real handler; the header is read back with the engine's decoder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import call_body

import inngest_mw
from inngest_mw import Context, ContextSync, Middleware, MiddlewareSync, TriggerEvent
from inngest_mw._const import Header
from inngest_mw.hooktrace import MAX_ENTRIES, MAX_HEADER_BYTES, HookTrace, SeenTrace, decode
from inngest_mw.pipeline import StepInfo

ASK = {Header.MW_TRACE: "1"}


class Audit(MiddlewareSync):
    name = "audit"

    def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
        ctx.set("audited", True)

    def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        self.steps = getattr(self, "steps", 0) + 1
        return call_next()

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        raise KeyError("observer broke")  # logged and ignored, but the trace says so


class Timer(Middleware):
    async def wrap_function(self, call_next: Callable[[], Awaitable[Any]], ctx: Any) -> Any:
        await asyncio.sleep(0)
        return await call_next()

    async def on_step_start(self, info: StepInfo) -> None:
        await asyncio.sleep(0)


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="a", trigger=TriggerEvent(event="t/a"), retries=0)
    async def a(ctx: Context) -> Any:
        return await ctx.step.run("charge", lambda: 1)

    @client.create_function(fn_id="s", trigger=TriggerEvent(event="t/s"), retries=0)
    def s(ctx: ContextSync) -> Any:
        return ctx.step.run("charge", lambda: 1)

    return [a, s]


async def _post(
    handler: inngest_mw.CommHandler, fn: str, headers: dict[str, str]
) -> inngest_mw.CommResponse:
    url = f"http://127.0.0.1/api/inngest?fnId=trace-{fn}&stepId=step"
    body = json.dumps(call_body()).encode()
    return await handler.handle(inngest_mw.CommRequest("POST", url, headers, body))


@pytest.mark.parametrize("fn", ["a", "s"])
async def test_a_request_that_asks_gets_every_hook_in_order_with_times_and_errors(fn: str) -> None:
    client = inngest_mw.Inngest(app_id="trace", is_production=False, middleware=[Audit, Timer])
    handler = inngest_mw.CommHandler(client, _functions(client))
    response = await _post(handler, fn, ASK)
    assert response.status == 206
    seen = decode(response.headers[Header.MW_TRACE])
    assert seen is not None
    assert seen.problem is None
    assert seen.more == 0
    order = [(c.middleware, c.hook) for c in seen.calls]
    assert order == [
        ("audit", "transform_input"),
        ("Timer", "wrap_function"),
        ("audit", "wrap_step"),
        ("Timer", "on_step_start"),
        ("audit", "on_step_complete"),
    ]
    by_hook = {c.hook: c for c in seen.calls}
    assert by_hook["on_step_complete"].error == "KeyError: 'observer broke'"
    assert by_hook["on_step_start"].step == "charge"
    assert by_hook["transform_input"].step is None
    # The step's interrupt passes through both onions: that is not something they raised.
    assert by_hook["wrap_function"].error is None
    assert by_hook["wrap_step"].error is None
    starts = [c.start_us for c in seen.calls]
    assert starts == sorted(starts)
    outer, inner = by_hook["wrap_function"], by_hook["wrap_step"]
    assert outer.start_us <= inner.start_us
    assert inner.start_us + inner.duration_us <= outer.start_us + outer.duration_us + 1
    assert 0 <= outer.self_us <= outer.duration_us


@pytest.mark.parametrize("fn", ["a", "s"])
async def test_no_header_is_sent_without_middleware(fn: str) -> None:
    client = inngest_mw.Inngest(app_id="trace", is_production=False)
    handler = inngest_mw.CommHandler(client, _functions(client))
    response = await _post(handler, fn, ASK)
    assert response.status == 206
    assert Header.MW_TRACE not in response.headers


@pytest.mark.parametrize("fn", ["a", "s"])
async def test_no_header_is_sent_when_none_is_asked_for(fn: str) -> None:
    client = inngest_mw.Inngest(app_id="trace", is_production=False, middleware=[Audit, Timer])
    handler = inngest_mw.CommHandler(client, _functions(client))
    for headers in ({}, {Header.MW_TRACE: "yes"}, {Header.MW_TRACE: ""}):
        response = await _post(handler, fn, headers)
        assert response.status == 206
        assert Header.MW_TRACE not in response.headers


class Refuses(MiddlewareSync):
    def wrap_request(self, call_next: Callable[[], Any], request: Any) -> Any:
        raise PermissionError("no entry\nfor you")


class RefusesAsync(Middleware):
    async def wrap_step(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        await call_next()
        raise ValueError("changed my mind")


@pytest.mark.parametrize("fn", ["a", "s"])
async def test_a_wrap_hook_that_raises_is_named_with_its_error(fn: str) -> None:
    client = inngest_mw.Inngest(app_id="trace", is_production=False, middleware=[Refuses])
    handler = inngest_mw.CommHandler(client, _functions(client))
    response = await _post(handler, fn, ASK)
    assert response.status == 500
    assert response.json()["name"] == "MiddlewareError"
    seen = decode(response.headers[Header.MW_TRACE])
    assert seen is not None
    [call] = seen.calls
    assert (call.middleware, call.hook) == ("Refuses", "wrap_request")
    assert call.error == "PermissionError: no entry for you"
    assert call.duration_us >= 0
    assert call.self_us == call.duration_us

    client = inngest_mw.Inngest(app_id="trace", is_production=False, middleware=[RefusesAsync])
    handler = inngest_mw.CommHandler(client, _functions(client))
    response = await _post(handler, fn, ASK)
    seen = decode(response.headers[Header.MW_TRACE])
    assert seen is not None
    [call] = seen.calls
    assert call.hook == "wrap_step"
    assert call.error == "ValueError: changed my mind"
    assert call.step == "charge"


def test_a_trace_keeps_within_its_bounds_and_counts_what_it_left_out() -> None:
    trace = HookTrace()
    for i in range(MAX_ENTRIES * 3):
        entry = trace.begin("M" * 500, "on_step_start", "s" * 500)
        entry[6] = "E" * 5000 if i % 2 else None
    value = trace.encode()
    assert len(value.encode()) <= MAX_HEADER_BYTES
    value.encode("ascii")  # header-safe
    seen = decode(value)
    assert seen is not None
    assert seen.problem is None
    assert len(seen.calls) + seen.more == MAX_ENTRIES * 3
    assert all(len(c.middleware) <= 64 and len(c.step or "") <= 64 for c in seen.calls)
    assert all(len(c.error or "") <= 160 for c in seen.calls)


def test_an_unreadable_header_is_a_problem_not_an_exception() -> None:
    assert decode(None) is None
    for value, problem in [
        ("", "not JSON"),
        ("[" * 100_000, "over"),
        ("[" * 5000, "not JSON"),
        ('{"v":2,"h":[]}', "not version 1"),
        ('{"v":1}', 'no "h" list'),
    ]:
        seen = decode(value)
        assert seen is not None, value
        assert seen.calls == (), value
        assert problem in (seen.problem or ""), value
    seen = decode('{"v":1,"h":[["m","h",1,2,3,null,null],["m"],5,["m","h",-1,2,3,null,null]]}')
    assert seen is not None
    assert seen == SeenTrace(seen.calls, 3)
    assert len(seen.calls) == 1


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=300)
    | _JSON.map(json.dumps)
    | _JSON.map(lambda v: json.dumps({"v": 1, "h": v}))
)
def test_decoding_any_header_never_raises(value: str) -> None:
    seen = decode(value)
    assert seen is not None
    for call in seen.calls:
        assert call.self_us >= 0
        assert call.middleware
        assert call.hook
        json.dumps(call.to_json())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=80),
            st.text(max_size=30),
            st.none() | st.text(max_size=80),
            st.none() | st.text(max_size=300),
        ),
        max_size=100,
    )
)
def test_what_a_trace_encodes_is_what_decoding_reads(
    calls: list[tuple[str, str, str | None, str | None]],
) -> None:
    trace = HookTrace()
    for label, hook, step, error in calls:
        trace.begin(label, hook, step)[6] = error
    value = trace.encode()
    assert len(value.encode()) <= MAX_HEADER_BYTES
    seen = decode(value)
    assert seen is not None
    assert seen.problem is None
    assert len(seen.calls) + seen.more == len(calls)


class Eager(Middleware):
    """Async hooks that never wait: on a sync function they run on the calling thread."""

    async def wrap_function(self, call_next: Callable[[], Awaitable[Any]], ctx: Any) -> Any:
        self.wrapped = True
        return await call_next()

    async def on_step_start(self, info: StepInfo) -> None:
        self.seen = info.id


class Blocking(MiddlewareSync):
    """Sync hooks that may block: on an async function each runs in a worker thread."""

    blocking = True

    def on_step_start(self, info: StepInfo) -> None:
        self.seen = info.id

    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        self.handled = info.id
        return call_next()


@pytest.mark.parametrize("fn", ["a", "s"])
async def test_every_way_a_hook_is_called_is_traced(fn: str) -> None:
    client = inngest_mw.Inngest(app_id="trace", is_production=False, middleware=[Eager, Blocking])
    handler = inngest_mw.CommHandler(client, _functions(client))
    response = await _post(handler, fn, ASK)
    assert response.status == 206
    seen = decode(response.headers[Header.MW_TRACE])
    assert seen is not None
    assert [(c.middleware, c.hook, c.step) for c in seen.calls] == [
        ("Eager", "wrap_function", None),
        ("Eager", "on_step_start", "charge"),
        ("Blocking", "on_step_start", "charge"),
        ("Blocking", "wrap_step_handler", "charge"),
    ]
    assert all(c.error is None for c in seen.calls)
    outer = seen.calls[0]
    assert all(c.start_us >= outer.start_us for c in seen.calls)
