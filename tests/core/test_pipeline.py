"""The hook pipeline: order of every hook, what each may change, wrap semantics, error policy."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from inngest_mw_asgi import serve
from support import Caller, EventSink, call_body, serve_asgi

import inngest_mw
from inngest_mw import (
    Context,
    ContextSync,
    Event,
    Middleware,
    MiddlewareSync,
    TriggerEvent,
)
from inngest_mw.memo import hash_step_id
from inngest_mw.testing import run_sync

TRIGGER = TriggerEvent(event="test/event")
RUN_HOOKS = (
    "transform_input",
    "after_memoization",
    "before_execution",
    "after_execution",
    "transform_output",
    "before_response",
    "before_send_events",
    "after_send_events",
    "transform_step_input",
)
OBSERVERS = (
    "on_run_start",
    "on_run_complete",
    "on_run_error",
    "on_step_start",
    "on_step_complete",
    "on_step_error",
)
WRAPS = ("wrap_request", "wrap_function", "wrap_step", "wrap_step_handler", "wrap_send")


def recorder(name: str, log: list[str], *, sync: bool) -> type:
    """A middleware class logging ``name.hook`` for every hook (``>``/``<`` around wraps)."""
    ns: dict[str, Any] = {}
    for hook in RUN_HOOKS + OBSERVERS:

        def make(hook: str = hook) -> Callable[..., Any]:
            if sync:

                def fn(self: Any, *args: Any) -> None:
                    log.append(f"{name}.{hook}")

                return fn

            async def afn(self: Any, *args: Any) -> None:
                log.append(f"{name}.{hook}")

            return afn

        ns[hook] = make()
    for hook in WRAPS:

        def make_wrap(hook: str = hook) -> Callable[..., Any]:
            if sync:

                def fn(self: Any, call_next: Callable[[], Any], arg: Any) -> Any:
                    log.append(f"{name}.{hook}>")
                    try:
                        return call_next()
                    finally:
                        log.append(f"{name}.{hook}<")

                return fn

            async def afn(self: Any, call_next: Callable[[], Awaitable[Any]], arg: Any) -> Any:
                log.append(f"{name}.{hook}>")
                try:
                    return await call_next()
                finally:
                    log.append(f"{name}.{hook}<")

            return afn

        ns[hook] = make_wrap()
    return type(f"Rec{name}", (MiddlewareSync if sync else Middleware,), ns)


def boom() -> None:
    raise ValueError("nope")


class App:
    """Client middleware A (and C with ``three``), function middleware B, served over real HTTP."""

    def __init__(self, *, sync: bool, three: bool = False) -> None:
        self.log: list[str] = []
        self.sink = EventSink()
        self.sync = sync
        self.three = three

    @contextlib.contextmanager
    def running(self) -> Iterator[Caller]:
        with serve_asgi(self.sink) as events_url:
            client_mw = [recorder("A", self.log, sync=self.sync)]
            if self.three:
                client_mw.append(recorder("C", self.log, sync=self.sync))
            client = inngest_mw.Inngest(
                app_id="app",
                is_production=False,
                event_api_base_url=events_url,
                middleware=client_mw,
            )
            self.client = client
            fn_mw = [recorder("B", self.log, sync=self.sync)]
            fns = _functions(client, fn_mw, self.sync)
            with serve_asgi(serve(client, fns)) as url:
                yield Caller(url + "/api/inngest")


def _functions(
    client: inngest_mw.Inngest, mw: list[Any], sync: bool
) -> list[inngest_mw.Function[Any]]:
    create = client.create_function
    if sync:

        @create(fn_id="two", trigger=TRIGGER, middleware=mw)
        def two(ctx: ContextSync) -> Any:
            a = ctx.step.run("a", lambda: 1)
            return ctx.step.run("b", lambda: a + 1)

        @create(fn_id="par", trigger=TRIGGER, middleware=mw)
        def par(ctx: ContextSync) -> Any:
            return ctx.group.parallel(
                (lambda: ctx.step.run("p1", lambda: 1), lambda: ctx.step.run("p2", lambda: 2))
            )

        @create(fn_id="fail", trigger=TRIGGER, middleware=mw)
        def fail(ctx: ContextSync) -> Any:
            return ctx.step.run("s", boom)

        @create(fn_id="raise", trigger=TRIGGER, middleware=mw)
        def raises(ctx: ContextSync) -> Any:
            raise RuntimeError("function failed")

        @create(fn_id="send", trigger=TRIGGER, middleware=mw)
        def send(ctx: ContextSync) -> Any:
            return ctx.step.send_event("s", Event(name="x/y", data={"a": 1}))

        return [two, par, fail, raises, send]

    @create(fn_id="two", trigger=TRIGGER, middleware=mw)
    async def two_a(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: 1)
        return await ctx.step.run("b", lambda: a + 1)

    @create(fn_id="par", trigger=TRIGGER, middleware=mw)
    async def par_a(ctx: Context) -> Any:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("p1", lambda: 1), lambda: ctx.step.run("p2", lambda: 2))
        )

    @create(fn_id="fail", trigger=TRIGGER, middleware=mw)
    async def fail_a(ctx: Context) -> Any:
        return await ctx.step.run("s", boom)

    @create(fn_id="raise", trigger=TRIGGER, middleware=mw)
    async def raises_a(ctx: Context) -> Any:
        raise RuntimeError("function failed")

    @create(fn_id="send", trigger=TRIGGER, middleware=mw)
    async def send_a(ctx: Context) -> Any:
        return await ctx.step.send_event("s", Event(name="x/y", data={"a": 1}))

    return [two_a, par_a, fail_a, raises_a, send_a]


@pytest.fixture(params=[False, True], ids=["async-mw", "sync-mw"])
def app(request: pytest.FixtureRequest) -> Iterator[tuple[App, Caller]]:
    application = App(sync=request.param)
    with application.running() as caller:
        yield application, caller


def fwd(*hooks: str, mws: str = "AB") -> list[str]:
    return [f"{m}.{h}" for h in hooks for m in mws]


def rev(*hooks: str, mws: str = "AB") -> list[str]:
    return [f"{m}.{h}" for h in hooks for m in reversed(mws)]


def around(hook: str, inner: list[str], mws: str = "AB") -> list[str]:
    return [f"{m}.{hook}>" for m in mws] + inner + [f"{m}.{hook}<" for m in reversed(mws)]


def executed_step() -> list[str]:
    handler = around("wrap_step_handler", [])
    body = fwd("on_step_start") + handler + fwd("on_step_complete")
    return fwd("transform_step_input") + around("wrap_step", body)


def tail() -> list[str]:
    return rev("after_execution", "transform_output") + fwd("before_response")


def test_first_request_runs_every_hook_in_order(app: tuple[App, Caller]) -> None:
    application, caller = app
    assert caller.call("app-two", call_body()).status_code == 206
    step = fwd("transform_step_input") + around(
        "wrap_step",
        fwd("on_step_start") + around("wrap_step_handler", []) + fwd("on_step_complete"),
    )
    inner = (
        fwd("transform_input")
        + rev("after_memoization")
        + fwd("before_execution")
        + fwd("on_run_start")
        + around("wrap_function", step)
        + tail()
    )
    assert application.log == around("wrap_request", inner)


def test_replay_then_new_step_fires_boundary_once_at_last_memo(app: tuple[App, Caller]) -> None:
    application, caller = app
    caller.call("app-two", call_body(steps={hash_step_id("a"): {"data": 1}}))
    memo_step = fwd("transform_step_input") + around(
        "wrap_step", rev("after_memoization") + fwd("before_execution")
    )
    inner = fwd("transform_input") + around("wrap_function", memo_step + executed_step()) + tail()
    assert application.log == around("wrap_request", inner)


def test_function_return_fires_on_run_complete(app: tuple[App, Caller]) -> None:
    application, caller = app
    steps = {hash_step_id("a"): {"data": 1}, hash_step_id("b"): {"data": 2}}
    res = caller.call("app-two", call_body(steps=steps))
    assert (res.status_code, res.json()) == (200, 2)
    memo_a = fwd("transform_step_input") + around("wrap_step", [])
    memo_b = fwd("transform_step_input") + around(
        "wrap_step", rev("after_memoization") + fwd("before_execution")
    )
    inner = (
        fwd("transform_input")
        + around("wrap_function", memo_a + memo_b)
        + rev("after_execution", "transform_output")
        + fwd("on_run_complete")
        + fwd("before_response")
    )
    assert application.log == around("wrap_request", inner)


def test_parallel_plan_skips_transform_output_and_handlers(app: tuple[App, Caller]) -> None:
    application, caller = app
    res = caller.call("app-par", call_body())
    assert [op["op"] for op in res.json()] == ["StepPlanned", "StepPlanned"]
    plan = fwd("transform_step_input") + around("wrap_step", [])
    inner = (
        fwd("transform_input")
        + rev("after_memoization")
        + fwd("before_execution")
        + fwd("on_run_start")
        + around("wrap_function", plan + plan)
        + rev("after_execution")
        + fwd("before_response")
    )
    assert application.log == around("wrap_request", inner)


def test_step_error_reaches_on_step_error_with_final_flag(app: tuple[App, Caller]) -> None:
    application, caller = app
    res = caller.call("app-fail", call_body(attempt=0, max_attempts=2))
    assert res.json()[0]["op"] == "StepError"
    assert fwd("on_step_error") == [
        e for e in application.log if "on_step" in e and "start" not in e
    ]


def test_function_error_fires_on_run_error(app: tuple[App, Caller]) -> None:
    application, caller = app
    res = caller.call("app-raise", call_body(attempt=3, max_attempts=4))
    assert res.status_code == 500
    assert application.log[-8:] == (
        rev("transform_output")
        + fwd("on_run_error")
        + fwd("before_response")
        + rev("wrap_request<")
    )


def test_step_send_event_runs_send_hooks_once_and_not_on_replay(app: tuple[App, Caller]) -> None:
    application, caller = app
    res = caller.call("app-send", call_body())
    [op] = res.json()
    assert op["data"] == ["id-0"]
    sends = [e for e in application.log if "send" in e]
    assert sends == fwd("before_send_events") + around("wrap_send", []) + rev("after_send_events")
    assert application.sink.received[0]["name"] == "x/y"
    application.log.clear()
    res = caller.call("app-send", call_body(steps={op["id"]: {"data": ["id-0"]}}))
    assert res.json() == ["id-0"]
    assert [e for e in application.log if "send" in e] == []
    assert len(application.sink.received) == 1


def test_client_send_outside_a_run_uses_only_client_middleware(app: tuple[App, Caller]) -> None:
    application, _ = app
    ids = application.client.send_sync([Event(name="x/a"), Event(name="x/b")])
    assert ids == ["id-0", "id-1"]
    assert application.log == fwd("before_send_events", mws="A") + around(
        "wrap_send", [], mws="A"
    ) + rev("after_send_events", mws="A")


def test_three_middlewares_nest_first_registered_outermost() -> None:
    application = App(sync=False, three=True)
    with application.running() as caller:
        caller.call(
            "app-two",
            call_body(steps={hash_step_id("a"): {"data": 1}, hash_step_id("b"): {"data": 2}}),
        )
    log = application.log
    assert log[:3] == ["A.wrap_request>", "C.wrap_request>", "B.wrap_request>"]
    assert log[-3:] == ["B.wrap_request<", "C.wrap_request<", "A.wrap_request<"]
    assert [e for e in log if e.endswith("after_execution")] == [
        "B.after_execution",
        "C.after_execution",
        "A.after_execution",
    ]
    assert [e for e in log if e.endswith("transform_input")] == [
        "A.transform_input",
        "C.transform_input",
        "B.transform_input",
    ]


def _unusual_hooks(sync: bool, log: list[str]) -> type:
    """A middleware with a static hook, a class-method hook and a hook set on the instance."""
    base: type = MiddlewareSync if sync else Middleware

    def logged(name: str) -> Callable[..., Any]:
        if sync:
            return lambda *args: log.append(name)

        async def hook(*args: Any) -> None:
            log.append(name)

        return hook

    static = logged("static")
    by_class = logged("classmethod")

    def class_hook(cls: type, *args: Any) -> Any:
        return by_class(*args)

    async def class_hook_async(cls: type, *args: Any) -> Any:
        return await by_class(*args)

    def init(self: Any, client: inngest_mw.Inngest, raw_request: object) -> None:
        self.client, self.raw_request = client, raw_request
        self.on_step_start = logged("instance")

    async def on_step_start(self: Any, info: Any) -> None:  # shadowed by the instance's
        log.append("class")

    def on_step_start_sync(self: Any, info: Any) -> None:
        log.append("class")

    cls = type(
        "Unusual",
        (base,),
        {
            "__init__": init,
            "before_execution": staticmethod(static),
            "after_execution": classmethod(class_hook if sync else class_hook_async),
            "on_step_start": on_step_start_sync if sync else on_step_start,
        },
    )
    return cls


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_hooks_held_on_the_instance_or_as_static_and_class_methods_are_called(sync: bool) -> None:
    log: list[str] = []
    client = inngest_mw.Inngest(
        app_id="unusual", is_production=False, middleware=[_unusual_hooks(sync, log)]
    )

    if sync:

        @client.create_function(fn_id="one", trigger=TRIGGER)
        def one_sync(ctx: ContextSync) -> int:
            return ctx.step.run("a", lambda: 1)

        fn: inngest_mw.Function[Any] = one_sync
    else:

        @client.create_function(fn_id="one", trigger=TRIGGER)
        async def one_async(ctx: Context) -> int:
            return await ctx.step.run("a", lambda: 1)

        fn = one_async

    result = run_sync(fn, event={"name": "test/event"})
    assert result.output == 1
    # Two requests: the step runs in the first, the function returns in the second.
    assert log == ["static", "instance", "classmethod", "static", "classmethod"]


def test_a_sync_function_refuses_an_async_step_handler_naming_the_step() -> None:
    client = inngest_mw.Inngest(app_id="colours", is_production=False)

    async def fetch() -> int:
        return 1

    @client.create_function(fn_id="mixed", trigger=TRIGGER, retries=0)
    def mixed(ctx: ContextSync) -> Any:
        return ctx.step.run("fetch", fetch)

    result = run_sync(mixed, event={"name": "test/event"})
    assert result.error is not None
    assert result.error["name"] == "TypeError"
    assert (
        result.error["message"] == "step 'fetch': a sync function cannot run an async step handler"
    )
