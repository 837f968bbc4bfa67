"""What each hook may change reaches the wire; wrap hooks see real outcomes; errors are contained."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from inngest_mw_asgi import serve
from support import Caller, EventSink, call_body, serve_asgi

import inngest_mw
from inngest_mw import (
    Context,
    ContextKey,
    ContextSync,
    Event,
    Middleware,
    MiddlewareSync,
    StepInfo,
    StepMemos,
    TransformOutputResult,
    TriggerEvent,
)
from inngest_mw.errors import ConfigError
from inngest_mw.memo import hash_step_id

TRIGGER = TriggerEvent(event="test/event")
DB: ContextKey[dict[str, int]] = ContextKey("db")
REQUEST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
SEEN: dict[str, Any] = {}


class Inject(MiddlewareSync):
    """Dependency injection plus memo and event rewriting in ``transform_input``."""

    def transform_input(
        self, ctx: Context | ContextSync, function: inngest_mw.Function[Any], steps: StepMemos
    ) -> None:
        ctx.set(DB, {"answer": 42})
        ctx.event.data = {**ctx.event.data, "injected": True}
        for memo in steps.values():
            if isinstance(memo.data, str):
                memo.data = memo.data.upper()


class Rewrite(Middleware):
    """Output, step input and outgoing events rewritten on the way out."""

    async def transform_output(self, result: TransformOutputResult) -> None:
        if result.has_output():
            result.output = {"wrapped": result.output}

    async def transform_step_input(self, info: StepInfo) -> None:
        if info.kind == "run" and info.input:
            info.input = [info.input[0] * 100]

    async def before_send_events(self, events: list[Event]) -> list[Event]:
        return [Event(name=e.name, data={**e.data, "stamped": True}) for e in events]


class SeeOutcomes(Middleware):
    """Records what the wrap hooks observe; ``wrap_step`` replaces the value user code receives."""

    async def wrap_step_handler(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            SEEN["handler_error"] = repr(exc)
            raise

    async def wrap_step(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        try:
            value = await call_next()
        except Exception as exc:
            SEEN["step_error"] = repr(exc)
            raise
        return {"from_wrap": value} if info.memoized else value

    async def wrap_request(self, call_next: Callable[[], Awaitable[Any]], request: Any) -> Any:
        SEEN["raw_request_type"] = type(self.raw_request).__name__
        SEEN["raw_path"] = self.raw_request["path"] if isinstance(self.raw_request, dict) else None
        return await call_next()


class BrokenTransform(MiddlewareSync):
    def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
        raise KeyError("missing config")


class BrokenObserver(Middleware):
    async def on_step_start(self, info: StepInfo) -> None:
        raise RuntimeError("telemetry down")


class SetVar(Middleware):
    """Sets a context variable around the function: a sync function in a worker thread sees it."""

    async def wrap_function(self, call_next: Callable[[], Awaitable[Any]], ctx: Any) -> Any:
        token = REQUEST_VAR.set("from-middleware")
        try:
            return await call_next()
        finally:
            REQUEST_VAR.reset(token)


class OfficialStyle(inngest_mw.MiddlewareSync):
    """The seven hooks of the official SDK with their signatures, unchanged."""

    calls: list[str] = []  # noqa: RUF012 - shared on purpose: instances are per request

    def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
        self.calls.append("transform_input")

    def before_execution(self) -> None:
        self.calls.append("before_execution")

    def after_execution(self) -> None:
        self.calls.append("after_execution")

    def transform_output(self, result: Any) -> None:
        self.calls.append("transform_output")
        if result.has_output() and result.step is None:
            result.output = "official-style"

    def before_response(self) -> None:
        self.calls.append("before_response")

    def before_send_events(self, events: list[Event]) -> None:
        self.calls.append("before_send_events")

    def after_send_events(self, result: Any) -> None:
        self.calls.append("after_send_events")


def build(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="inject", trigger=TRIGGER, middleware=[Inject])
    async def inject(ctx: Context) -> Any:
        memo = await ctx.step.run("m", lambda: "lower")
        return {"db": ctx.get(DB)["answer"], "event": ctx.event.data, "memo": memo}

    @create(fn_id="rewrite", trigger=TRIGGER, middleware=[Rewrite])
    async def rewrite(ctx: Context) -> Any:
        n = await ctx.step.run("n", lambda x: x + 1, 1)
        await ctx.step.send_event("send", Event(name="x/y", data={"n": n}))
        return n

    @create(fn_id="outcomes", trigger=TRIGGER, middleware=[SeeOutcomes])
    async def outcomes(ctx: Context) -> Any:
        value = await ctx.step.run("ok", lambda: 1)
        await ctx.step.run("bad", _fail)
        return value

    @create(fn_id="broken", trigger=TRIGGER, middleware=[BrokenTransform])
    async def broken(ctx: Context) -> Any:
        return 1

    @create(fn_id="observer", trigger=TRIGGER, middleware=[BrokenObserver])
    async def observer(ctx: Context) -> Any:
        return await ctx.step.run("s", lambda: "still fine")

    @create(fn_id="ctxvar", trigger=TRIGGER, middleware=[SetVar])
    def ctxvar(ctx: ContextSync) -> Any:
        return ctx.step.run("read", REQUEST_VAR.get)

    @create(fn_id="official", trigger=TRIGGER, middleware=[OfficialStyle])
    def official(ctx: ContextSync) -> Any:
        ctx.step.send_event("s", Event(name="x/z"))
        return "plain"

    return [inject, rewrite, outcomes, broken, observer, ctxvar, official]


def _fail() -> None:
    raise ValueError("step exploded")


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[EventSink, str]]:
    events = EventSink()
    with serve_asgi(events) as url:
        yield events, url


@pytest.fixture(scope="module")
def caller(sink: tuple[EventSink, str]) -> Iterator[Caller]:
    client = inngest_mw.Inngest(app_id="app", is_production=False, event_api_base_url=sink[1])
    with serve_asgi(serve(client, build(client))) as url:
        yield Caller(url + "/api/inngest")


def test_transform_input_injects_typed_values_and_rewrites_event_and_memos(caller: Caller) -> None:
    res = caller.call("app-inject", call_body(steps={hash_step_id("m"): {"data": "lower"}}))
    assert res.json() == {"db": 42, "event": {"x": 1, "injected": True}, "memo": "LOWER"}


def test_transform_step_input_changes_the_handler_arguments_and_output_reaches_the_wire(
    caller: Caller,
) -> None:
    [op] = caller.call("app-rewrite", call_body()).json()
    assert op["data"] == {"wrapped": 101}


def test_transformed_events_reach_the_event_api(
    caller: Caller, sink: tuple[EventSink, str]
) -> None:
    res = caller.call("app-rewrite", call_body(steps={hash_step_id("n"): {"data": 101}}))
    assert res.json()[0]["op"] == "StepRun"
    assert sink[0].received[-1] == {
        "name": "x/y",
        "data": {"n": 101, "stamped": True},
        "ts": sink[0].received[-1]["ts"],
    }


def test_transform_output_changes_the_function_result(caller: Caller) -> None:
    steps = {hash_step_id("n"): {"data": 101}, hash_step_id("send"): {"data": ["i"]}}
    assert caller.call("app-rewrite", call_body(steps=steps)).json() == {"wrapped": 101}


def test_wrap_hooks_see_the_step_handler_exception(caller: Caller) -> None:
    SEEN.clear()
    [op] = caller.call("app-outcomes", call_body(steps={hash_step_id("ok"): {"data": 1}})).json()
    assert op["op"] == "StepError"
    assert SEEN["handler_error"] == "ValueError('step exploded')"
    assert SEEN["step_error"] == "ValueError('step exploded')"


def test_value_returned_by_wrap_step_is_what_user_code_receives(caller: Caller) -> None:
    steps = {hash_step_id("ok"): {"data": 1}, hash_step_id("bad"): {"data": None}}
    assert caller.call("app-outcomes", call_body(steps=steps)).json() == {"from_wrap": 1}


def test_hooks_observe_the_raw_framework_request(caller: Caller) -> None:
    SEEN.clear()
    caller.call("app-outcomes", call_body())
    assert SEEN["raw_request_type"] == "dict"
    assert SEEN["raw_path"] == "/api/inngest"


def test_transform_hook_error_is_retriable_and_names_middleware_and_hook(caller: Caller) -> None:
    res = caller.call("app-broken", call_body())
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "false"
    body = res.json()
    assert body["name"] == "MiddlewareError"
    assert "BrokenTransform.transform_input" in body["message"]


def test_observer_hook_error_is_logged_and_never_fails_the_run(
    caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    [op] = caller.call("app-observer", call_body()).json()
    assert (op["op"], op["data"]) == ("StepRun", "still fine")
    assert "BrokenObserver.on_step_start raised" in caplog.text


def test_sync_function_under_async_server_keeps_context_variables(caller: Caller) -> None:
    [op] = caller.call("app-ctxvar", call_body()).json()
    assert op["data"] == "from-middleware"


def test_official_sdk_style_middleware_works_unchanged(caller: Caller) -> None:
    OfficialStyle.calls.clear()
    [op] = caller.call("app-official", call_body()).json()
    assert op["op"] == "StepRun"
    assert OfficialStyle.calls == [
        "transform_input",
        "before_execution",
        "before_send_events",
        "after_send_events",
        "after_execution",
        "transform_output",
        "before_response",
    ]
    res = caller.call("app-official", call_body(steps={op["id"]: {"data": op["data"]}}))
    assert res.json() == "official-style"


def test_passing_a_middleware_instance_is_a_clear_error() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)
    with pytest.raises(
        ConfigError, match="got an instance of Inject; pass the class Inject itself"
    ):
        inngest_mw.Inngest(
            app_id="app", is_production=False, middleware=[cast(Any, Inject(client, None))]
        )


def test_factory_binds_constructor_arguments() -> None:
    class Tagged(MiddlewareSync):
        def __init__(self, client: inngest_mw.Inngest, raw_request: object, tag: str) -> None:
            super().__init__(client, raw_request)
            self.tag = tag

    client = inngest_mw.Inngest(
        app_id="app", is_production=False, middleware=[Tagged.factory(tag="t1")]
    )
    [instance] = client.middleware.build(client, None).instances
    assert isinstance(instance, Tagged)
    assert instance.tag == "t1"


def test_missing_injected_value_names_the_key() -> None:
    ctx_key: ContextKey[int] = ContextKey("tenant")
    client = inngest_mw.Inngest(app_id="app", is_production=False)

    @client.create_function(fn_id="k", trigger=TRIGGER)
    def k(ctx: ContextSync) -> Any:
        return ctx.get(ctx_key, 7)

    from inngest_mw._drive import drive
    from inngest_mw.execution import RequestMeta, parse_call, request_flow
    from inngest_mw.pipeline import HookTable

    call, meta = parse_call(call_body()), RequestMeta()
    out = drive(request_flow(client, k, k.handler, call, HookTable([]), meta, async_path=False))
    assert out.output == 7
    ctx = inngest_mw.ContextSync(
        event=Event(name="e"),
        events=[],
        run_id="r",
        attempt=0,
        max_attempts=None,
        function_id="f",
        logger=client.logger,
        step=None,  # type: ignore[arg-type]
        group=None,  # type: ignore[arg-type]
        metadata=inngest_mw.MetadataSync(client, "r", 0),
    )
    with pytest.raises(KeyError, match="ContextKey\\('tenant'\\) was not set"):
        ctx.get(ctx_key)


def _stacked(count: int, sync: bool) -> list[type]:
    """``count`` middlewares that each wrap steps, requests and the function (one colour)."""

    def make(i: int) -> type:
        if sync:

            class SyncWrap(MiddlewareSync):
                def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
                    return call_next()

                def wrap_request(self, call_next: Callable[[], Any], request: Any) -> Any:
                    return call_next()

            return type(f"SyncWrap{i}", (SyncWrap,), {})

        class AsyncWrap(Middleware):
            async def wrap_step(
                self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
            ) -> Any:
                return await call_next()

            async def wrap_function(self, call_next: Callable[[], Awaitable[Any]], ctx: Any) -> Any:
                return await call_next()

        return type(f"AsyncWrap{i}", (AsyncWrap,), {})

    return [make(i) for i in range(count)]


@pytest.mark.parametrize(
    "function_is_sync", [False, True], ids=["sync-wraps-on-async-fn", "async-wraps-on-sync-fn"]
)
def test_many_cross_colour_wraps_under_concurrency_never_exhaust_threads(
    function_is_sync: bool,
) -> None:
    import concurrent.futures

    client = inngest_mw.Inngest(
        app_id="app", is_production=False, middleware=_stacked(12, sync=not function_is_sync)
    )
    if function_is_sync:

        @client.create_function(fn_id="w", trigger=TRIGGER)
        def fn_sync(ctx: ContextSync) -> Any:
            return ctx.step.run("s", lambda: "deep")

        fn: inngest_mw.Function[Any] = fn_sync
    else:

        @client.create_function(fn_id="w", trigger=TRIGGER)
        async def fn_async(ctx: Context) -> Any:
            return await ctx.step.run("s", lambda: "deep")

        fn = fn_async
    with serve_asgi(serve(client, [fn])) as url:
        caller = Caller(url + "/api/inngest")
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: caller.call("app-w", call_body()).json(), range(32)))
    assert all(r[0]["data"] == "deep" for r in results)


class ConvertErrors(Middleware):
    """Turns step failures into a domain error: a deliberate conversion, not a middleware bug."""

    async def wrap_step_handler(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        try:
            return await call_next()
        except ValueError as exc:
            raise LookupError(f"converted: {exc}") from exc


def test_wrap_hook_converting_an_inner_error_is_not_blamed_on_the_middleware() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False, middleware=[ConvertErrors])

    @client.create_function(fn_id="c", trigger=TRIGGER)
    async def converted(ctx: Context) -> Any:
        return await ctx.step.run("s", _fail)

    with serve_asgi(serve(client, [converted])) as url:
        [op] = Caller(url + "/api/inngest").call("app-c", call_body()).json()
    assert op["op"] == "StepError"
    assert (op["error"]["name"], op["error"]["message"]) == (
        "LookupError",
        "converted: step exploded",
    )


class BothColours(MiddlewareSync):
    """A sync middleware with an async twin for its wrap hook: no thread hop on either path."""

    used: list[str] = []  # noqa: RUF012 - shared on purpose: instances are per request

    def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        self.used.append("sync")
        return call_next()

    async def wrap_step_async(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        self.used.append("async")
        return await call_next()


def test_async_twin_of_a_sync_wrap_hook_is_used_on_the_async_path() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False, middleware=[BothColours])

    @client.create_function(fn_id="a", trigger=TRIGGER)
    async def on_async(ctx: Context) -> Any:
        return await ctx.step.run("s", threading_ident)

    @client.create_function(fn_id="s", trigger=TRIGGER)
    def on_sync(ctx: ContextSync) -> Any:
        return ctx.step.run("s", threading_ident)

    BothColours.used.clear()
    with serve_asgi(serve(client, [on_async, on_sync])) as url:
        caller = Caller(url + "/api/inngest")
        caller.call("app-a", call_body())
        assert BothColours.used == ["async"]
        caller.call("app-s", call_body())
        assert BothColours.used == ["async", "sync"]


def threading_ident() -> int:
    import threading

    return threading.get_ident()
