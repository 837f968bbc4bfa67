"""The hook set is declared once: dispatch by spec, chained sends, and misspelt hooks refused."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import EventSink, call_body, serve_asgi

import inngest_mw
from inngest_mw import Event, Middleware, MiddlewareSync
from inngest_mw._source import does_nothing
from inngest_mw.errors import ConfigError
from inngest_mw.hooks import ALL_HOOKS, HOOKS, HookKind


@pytest.fixture
def sink() -> Iterator[tuple[EventSink, str]]:
    events = EventSink()
    with serve_asgi(events) as url:
        yield events, url


def _tagger(tag: str, colour: str) -> type[Middleware] | type[MiddlewareSync]:
    """A middleware whose ``before_send_events`` returns a new list with ``tag`` appended."""

    def tagged(events: list[Event]) -> list[Event]:
        return [
            Event(name=e.name, data={**e.data, "tags": [*e.data.get("tags", []), tag]})
            for e in events
        ]

    if colour == "async":

        class TagAsync(Middleware):
            async def before_send_events(self, events: list[Event]) -> list[Event] | None:
                return tagged(events)

        return TagAsync

    class TagSync(MiddlewareSync):
        def before_send_events(self, events: list[Event]) -> list[Event] | None:
            return tagged(events)

    return TagSync


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("colours", ["async", "sync", "mixed"])
@pytest.mark.parametrize("send_colour", ["async", "sync"])
async def test_chained_before_send_events_each_see_the_previous_ones_output(
    sink: tuple[EventSink, str], count: int, colours: str, send_colour: str
) -> None:
    events, url = sink
    names = "abc"[:count]
    middleware = [
        _tagger(tag, colours if colours != "mixed" else ("async", "sync")[i % 2])
        for i, tag in enumerate(names)
    ]
    client = inngest_mw.Inngest(
        app_id="chain",
        is_production=False,
        event_api_base_url=url,
        middleware=middleware,
    )
    event = Event(name="t/chain", data={"n": 1})
    if send_colour == "async":
        await client.send(event)
    else:
        await asyncio.to_thread(client.send_sync, event)
    [received] = events.received
    assert received["data"] == {"n": 1, "tags": list(names)}


def test_a_misspelt_hook_is_refused_when_the_class_is_created_naming_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"on_step_strat .*did you mean 'on_step_start'"):

        class Typo(MiddlewareSync):
            def on_step_strat(self, info: Any) -> None: ...

    with pytest.raises(ConfigError, match=r"tranform_input .*did you mean 'transform_input'"):

        class Typo2(Middleware):
            async def tranform_input(self, ctx: Any, fn: Any, steps: Any) -> None: ...


def test_a_hook_like_name_with_no_near_hook_is_refused_and_helpers_are_allowed() -> None:
    with pytest.raises(ConfigError, match=r"on_payment looks like a hook but is not one"):

        class Unknown(Middleware):
            def on_payment(self) -> None: ...

    class Fine(MiddlewareSync):
        def wrap_step_async(self, call_next: Any, info: Any) -> Any: ...
        def _on_helper(self) -> None: ...
        def record(self) -> None: ...

    assert Fine.record is not None


def test_an_async_twin_of_a_non_wrap_hook_is_refused() -> None:
    with pytest.raises(ConfigError, match="on_step_start_async"):

        class Twin(MiddlewareSync):
            async def on_step_start_async(self, info: Any) -> None: ...


@pytest.mark.parametrize("base", [Middleware, MiddlewareSync])
def test_every_declared_hook_is_a_method_of_both_bases_and_nothing_else_is(base: type) -> None:
    methods = {
        name
        for name, value in vars(base).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    assert methods == set(ALL_HOOKS)
    for spec in HOOKS.ALL:
        params = list(inspect.signature(getattr(base, spec.name)).parameters)
        if spec.kind is HookKind.WRAP:
            assert params[1] == "call_next", spec.name
        is_async = inspect.iscoroutinefunction(getattr(base, spec.name))
        assert is_async is (base is Middleware), spec.name


async def test_async_hooks_that_really_wait_are_resumed_and_their_errors_named() -> None:
    from inngest_mw import Context, ContextKey, TriggerEvent
    from inngest_mw.testing import run

    key: ContextKey[str] = ContextKey("waited")
    seen: list[str] = []

    class Waits(Middleware):
        async def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[str] = loop.create_future()
            loop.call_later(0.01, ready.set_result, "after a real wait")
            ctx.set(key, await ready)

        async def on_step_start(self, info: Any) -> None:
            await asyncio.sleep(0.001)
            seen.append(info.id)

    class FailsAfterWaiting(Middleware):
        async def after_execution(self) -> None:
            await asyncio.sleep(0.001)
            raise LookupError("gone")

    client = inngest_mw.Inngest(app_id="w", is_production=False)

    @client.create_function(
        fn_id="waits", trigger=TriggerEvent(event="t/w"), middleware=[Waits], retries=0
    )
    async def waits(ctx: Context) -> str:
        return await ctx.step.run("s", lambda: ctx[key])

    result = await run(waits)
    assert (result.output, seen) == ("after a real wait", ["s"])

    @client.create_function(
        fn_id="fails", trigger=TriggerEvent(event="t/f"), middleware=[FailsAfterWaiting], retries=0
    )
    async def fails(ctx: Context) -> str:
        return "never returned"

    handler = inngest_mw.CommHandler(client, [fails])
    url = "http://127.0.0.1/api/inngest?fnId=w-fails&stepId=step"
    body = json.dumps(call_body()).encode()
    response = await handler.handle(inngest_mw.CommRequest("POST", url, {}, body))
    assert response.status == 500
    assert response.json()["name"] == "MiddlewareError"
    assert (
        "FailsAfterWaiting.after_execution raised LookupError: gone" in response.json()["message"]
    )


class _NoOps(inngest_mw.MiddlewareSync):
    made = 0

    def __init__(self, client: inngest_mw.Inngest, raw_request: object) -> None:
        super().__init__(client, raw_request)
        _NoOps.made += 1

    def on_step_start(self, info: inngest_mw.StepInfo) -> None:
        """Documented, but does nothing."""

    def transform_output(self, result: inngest_mw.TransformOutputResult) -> None:
        return None

    def wrap_step(self, call_next: Callable[[], Any], info: inngest_mw.StepInfo) -> Any:
        return call_next()


def test_a_middleware_whose_overrides_do_nothing_is_never_made() -> None:
    client = inngest_mw.Inngest(app_id="noop", is_production=False, middleware=[_NoOps])

    @client.create_function(fn_id="f", trigger=inngest_mw.TriggerEvent(event="t/x"))
    def f(ctx: inngest_mw.ContextSync) -> str:
        return ctx.step.run("s", lambda: "ok")

    _NoOps.made = 0
    run = inngest_mw.testing.run_sync(f)
    assert run.output == "ok"
    assert _NoOps.made == 0


async def _awaited_next(self: Any, call_next: Any, info: Any) -> Any:
    return await call_next()


def _pass(self: Any, info: Any) -> None:
    pass


def _ellipsis(self: Any, info: Any) -> None: ...


def _stores(self: Any, info: Any) -> None:
    self.seen = info


def _returns_value(self: Any, info: Any) -> Any:
    return info


def _next_with_args(self: Any, call_next: Any, info: Any) -> Any:
    return call_next(info)


@pytest.mark.parametrize(
    ("fn", "wrap", "expected"),
    [
        (_awaited_next, True, True),
        (_awaited_next, False, False),  # as a chain hook, ``call_next`` is just an argument
        (_pass, False, True),
        (_ellipsis, False, True),
        (_stores, False, False),
        (_returns_value, False, False),
        (_next_with_args, True, False),
        (len, False, False),  # no source: assume it does something
    ],
)
def test_does_nothing_recognises_only_bodies_that_do_nothing(
    fn: Callable[..., Any], wrap: bool, expected: bool
) -> None:
    assert does_nothing(fn, wrap) is expected
