"""Hooks of the other colour cost no thread hop where they need none (``inngest_mw._bridge``).

* A ``MiddlewareSync`` wrap hook on an async function runs on the loop's thread, in a greenlet:
  the inner layers it calls may really wait without blocking the loop, and they see the context
  the hook set. ``blocking = True`` sends every hook of the middleware to a worker thread instead.
* A ``Middleware`` (async) hook on a sync function runs on the calling thread when it cannot wait;
  one that awaits anything but ``call_next()`` runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from support import call_body

import inngest_mw
from inngest_mw import (
    CommHandler,
    CommRequest,
    CommResponse,
    Context,
    ContextSync,
    Middleware,
    MiddlewareSync,
    StepInfo,
    TriggerEvent,
)
from inngest_mw._source import needs_loop

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
URL = "http://127.0.0.1/api/inngest?fnId=x-f&stepId=step"


class Seen:
    threads: ClassVar[list[str]] = []

    @classmethod
    def note(cls, where: str) -> None:
        cls.threads.append(f"{where}@{threading.current_thread().name}")


class SyncWrap(MiddlewareSync):
    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        Seen.note("sync-wrap")
        REQUEST_ID.set(f"set by hook for {info.id}")
        return {"wrapped": call_next()}


class BlockingSyncWrap(SyncWrap):
    blocking = True


def body(**kwargs: Any) -> bytes:
    return json.dumps(call_body(**kwargs)).encode()


def post(handler: CommHandler, data: bytes) -> CommRequest:
    return CommRequest("POST", URL, {}, data)


async def serve_async(middleware: type[MiddlewareSync]) -> tuple[CommHandler, asyncio.Event]:
    client = inngest_mw.Inngest(app_id="x", is_production=False, middleware=[middleware])
    gate = asyncio.Event()

    @client.create_function(fn_id="f", trigger=TriggerEvent(event="t/x"))
    async def f(ctx: Context) -> Any:
        async def work() -> str:
            Seen.note("step")
            if ctx.event.data.get("wait"):
                await gate.wait()  # a real wait, released by another request
            return REQUEST_ID.get()

        return await ctx.step.run("s", work)

    return CommHandler(client, [f]), gate


async def test_a_sync_wrap_hook_on_an_async_function_runs_on_the_loop_thread() -> None:
    Seen.threads.clear()
    handler, _ = await serve_async(SyncWrap)
    response = await handler.handle(post(handler, body()))
    [op] = response.json()
    assert op["data"] == {"wrapped": "set by hook for s"}
    loop_thread = threading.current_thread().name
    assert Seen.threads == [f"sync-wrap@{loop_thread}", f"step@{loop_thread}"]


async def test_inner_layers_that_really_wait_do_not_block_the_loop() -> None:
    handler, gate = await serve_async(SyncWrap)
    event = {"name": "t/x", "data": {"wait": True}, "id": "e1", "ts": 1}
    waiting = asyncio.ensure_future(handler.handle(post(handler, body(event=event))))
    # The waiting request is parked inside its sync wrap hook; this one runs to its end meanwhile.
    other = await handler.handle(post(handler, body()))
    assert not waiting.done()
    gate.set()
    done = await waiting
    assert other.json()[0]["data"] == {"wrapped": "set by hook for s"}
    assert done.json()[0]["data"] == {"wrapped": "set by hook for s"}


async def test_a_blocking_middleware_runs_its_hooks_in_a_worker_thread() -> None:
    Seen.threads.clear()
    handler, _ = await serve_async(BlockingSyncWrap)
    response = await handler.handle(post(handler, body()))
    assert response.json()[0]["data"] == {"wrapped": "set by hook for s"}
    loop_thread = threading.current_thread().name
    hook, step = Seen.threads
    assert hook.startswith("sync-wrap@inngest-mw")
    assert step == f"step@{loop_thread}"


async def test_an_error_raised_by_a_sync_wrap_hook_in_its_greenlet_names_the_hook() -> None:
    class Broken(MiddlewareSync):
        def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
            call_next()
            raise ValueError("broken after the step")

    handler, _ = await serve_async(Broken)
    response = await handler.handle(post(handler, body()))
    [op] = response.json()
    assert op["op"] == "StepError"
    assert op["error"]["name"] == "MiddlewareError"
    assert op["error"]["message"] == (
        "middleware Broken.wrap_step_handler raised ValueError: broken after the step"
    )


async def test_a_step_error_passes_through_a_sync_wrap_hook_unchanged() -> None:
    client = inngest_mw.Inngest(app_id="x", is_production=False, middleware=[SyncWrap])

    @client.create_function(fn_id="f", trigger=TriggerEvent(event="t/x"), retries=0)
    async def f(ctx: Context) -> Any:
        async def fails() -> None:
            await asyncio.sleep(0)
            raise KeyError("missing")

        return await ctx.step.run("s", fails)

    handler = CommHandler(client, [f])
    response = await handler.handle(post(handler, body(max_attempts=1)))
    [op] = response.json()
    assert op["op"] == "StepFailed"
    assert op["error"]["name"] == "KeyError"


class AsyncObserver(Middleware):
    async def on_step_start(self, info: StepInfo) -> None:
        Seen.note("loop-free")


class AsyncWaitingObserver(Middleware):
    async def on_step_start(self, info: StepInfo) -> None:
        await asyncio.sleep(0)
        Seen.note("waits")


class AsyncWrap(Middleware):
    async def wrap_step_handler(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        Seen.note("async-wrap")
        return {"wrapped": await call_next()}


def serve_sync(*middleware: type[Middleware]) -> CommHandler:
    client = inngest_mw.Inngest(app_id="x", is_production=False, middleware=list(middleware))

    @client.create_function(fn_id="f", trigger=TriggerEvent(event="t/x"))
    def f(ctx: ContextSync) -> Any:
        return ctx.step.run("s", lambda: Seen.note("step") or "ok")

    return CommHandler(client, [f])


def test_async_hooks_that_cannot_wait_run_on_the_calling_thread_of_a_sync_function() -> None:
    Seen.threads.clear()
    handler = serve_sync(AsyncObserver, AsyncWrap)
    response: CommResponse = handler.handle_sync(post(handler, body()))
    assert response.json()[0]["data"] == {"wrapped": "ok"}
    here = threading.current_thread().name
    assert Seen.threads == [f"loop-free@{here}", f"async-wrap@{here}", f"step@{here}"]


def test_an_async_hook_that_waits_runs_on_the_loop_for_a_sync_function() -> None:
    Seen.threads.clear()
    handler = serve_sync(AsyncWaitingObserver)
    response = handler.handle_sync(post(handler, body()))
    assert response.json()[0]["data"] == "ok"
    here = threading.current_thread().name
    waits, step = Seen.threads
    assert waits == "waits@inngest-mw-bridge"
    assert step == f"step@{here}"


async def _no_await(self: Any, info: Any) -> None:
    self.seen = info


async def _awaits_other(self: Any, info: Any) -> None:
    await asyncio.sleep(0)


async def _creates_task(self: Any, info: Any) -> None:
    asyncio.get_running_loop().call_soon(print)


async def _wrap_next_only(self: Any, call_next: Any, info: Any) -> Any:
    try:
        return await call_next()
    finally:
        self.done = True


async def _wrap_awaits_twice(self: Any, call_next: Any, info: Any) -> Any:
    first = await call_next()
    return first, await call_next(1)


async def _async_with(self: Any, info: Any) -> None:
    async with self.lock:
        pass


async def _nested_waits(self: Any, info: Any) -> None:
    async def helper() -> None:
        await asyncio.sleep(0)

    self.helper = helper  # defined, never awaited here: cannot wait


@pytest.mark.parametrize(
    ("fn", "wrap", "expected"),
    [
        (_no_await, False, False),
        (_awaits_other, False, True),
        (_creates_task, False, True),
        (_wrap_next_only, True, False),
        (_wrap_next_only, False, True),  # as a chain hook, call_next is not special
        (_wrap_awaits_twice, True, True),  # call_next(1) is not call_next()
        (_async_with, False, True),
        (_nested_waits, False, False),
        (print, False, True),  # no source: assume the worst
    ],
)
def test_needs_loop_is_false_only_when_the_hook_cannot_wait(
    fn: Callable[..., Any], wrap: bool, expected: bool
) -> None:
    assert needs_loop(fn, wrap) is expected
