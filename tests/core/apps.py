"""Functions used by the core tests, each in an async and a sync variant (``<id>`` and ``<id>-sync``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

TRIGGER = TriggerEvent(event="test/event")


def build(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    fns: list[inngest_mw.Function[Any]] = []

    def both(fn_id: str, async_fn: Any, sync_fn: Any, **options: Any) -> None:
        fns.append(client.create_function(fn_id=fn_id, trigger=TRIGGER, **options)(async_fn))
        fns.append(
            client.create_function(fn_id=f"{fn_id}-sync", trigger=TRIGGER, **options)(sync_fn)
        )

    async def two_steps(ctx: Context) -> dict[str, Any]:
        a = await ctx.step.run("a", lambda: ctx.event.data["x"] + 1)
        b = await ctx.step.run("b", lambda n: n * 10, a)
        return {"a": a, "b": b}

    def two_steps_sync(ctx: ContextSync) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: ctx.event.data["x"] + 1)
        b = ctx.step.run("b", lambda n: n * 10, a)
        return {"a": a, "b": b}

    both("two-steps", two_steps, two_steps_sync)

    async def waits(ctx: Context) -> Any:
        await ctx.step.sleep("nap", dt.timedelta(seconds=90))
        got = await ctx.step.wait_for_event(
            "wait", event="test/reply", if_exp="async.data.x == event.data.x", timeout="1h"
        )
        res = await ctx.step.invoke_by_id(
            "call", function_id="two-steps", data={"x": 5}, timeout="10m"
        )
        return {"got": None if got is None else got.data, "res": res}

    def waits_sync(ctx: ContextSync) -> Any:
        ctx.step.sleep("nap", dt.timedelta(seconds=90))
        got = ctx.step.wait_for_event(
            "wait", event="test/reply", if_exp="async.data.x == event.data.x", timeout="1h"
        )
        res = ctx.step.invoke_by_id("call", function_id="two-steps", data={"x": 5}, timeout="10m")
        return {"got": None if got is None else got.data, "res": res}

    both("waits", waits, waits_sync)

    async def parallel(ctx: Context) -> Any:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("p1", lambda: 1), lambda: ctx.step.run("p2", lambda: 2))
        )

    def parallel_sync(ctx: ContextSync) -> Any:
        return ctx.group.parallel(
            (lambda: ctx.step.run("p1", lambda: 1), lambda: ctx.step.run("p2", lambda: 2))
        )

    both("parallel", parallel, parallel_sync)

    def boom() -> None:
        raise ValueError("card declined")

    async def step_fails(ctx: Context) -> Any:
        return await ctx.step.run("charge", boom)

    def step_fails_sync(ctx: ContextSync) -> Any:
        return ctx.step.run("charge", boom)

    both("step-fails", step_fails, step_fails_sync)

    async def catches(ctx: Context) -> Any:
        try:
            await ctx.step.run("charge", boom)
        except inngest_mw.StepError as exc:
            return {"caught": exc.message, "name": exc.name}
        return None

    def catches_sync(ctx: ContextSync) -> Any:
        try:
            ctx.step.run("charge", boom)
        except inngest_mw.StepError as exc:
            return {"caught": exc.message, "name": exc.name}
        return None

    both("catches", catches, catches_sync)

    async def non_retriable(ctx: Context) -> Any:
        raise inngest_mw.NonRetriableError("invalid input")

    def non_retriable_sync(ctx: ContextSync) -> Any:
        raise inngest_mw.NonRetriableError("invalid input")

    both("non-retriable", non_retriable, non_retriable_sync)

    async def crashes(ctx: Context) -> Any:
        raise RuntimeError("flaky")

    def crashes_sync(ctx: ContextSync) -> Any:
        raise RuntimeError("flaky")

    both("crashes", crashes, crashes_sync)

    async def retry_after(ctx: Context) -> Any:
        raise inngest_mw.RetryAfterError("slow down", dt.timedelta(seconds=30))

    def retry_after_sync(ctx: ContextSync) -> Any:
        raise inngest_mw.RetryAfterError("slow down", dt.timedelta(seconds=30))

    both("retry-after", retry_after, retry_after_sync)

    async def repeated(ctx: Context) -> Any:
        return [await ctx.step.run("same", lambda i=i: i) for i in range(3)]

    def repeated_sync(ctx: ContextSync) -> Any:
        return [ctx.step.run("same", lambda i=i: i) for i in range(3)]

    both("repeated", repeated, repeated_sync)
    return fns
