"""The functions of the differential test, written once and registered with both SDKs.

Each body uses only the API the official ``inngest`` package (0.5.x) and ``inngest_mw`` share:
``ctx.step.run/sleep/wait_for_event/invoke_by_id``, ``ctx.group.parallel`` and the error classes,
which come from a ``Kit`` so the very same code raises each SDK's own exception types. Durations
are ``timedelta`` because the official SDK accepts no time strings. Every function has an async
variant ``<id>`` and a sync variant ``<id>-sync``.

The official SDK is a test-only peer: only this module and the differential test import it.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastapi
from inngest_mw_asgi import serve as serve_ours

import inngest_mw

with warnings.catch_warnings():
    # inngest 0.5.19 defines a pydantic model with a class-based ``config`` (deprecated in v2).
    warnings.simplefilter("ignore", DeprecationWarning)
    import inngest
    import inngest.fast_api

APP_ID = "diff"
TRIGGER_EVENT = "test/event"
SLEEP = dt.timedelta(hours=1)
WAIT_TIMEOUT = dt.timedelta(hours=1)
ODD_TIMEOUT = dt.timedelta(seconds=90)
INVOKE_TIMEOUT = dt.timedelta(minutes=10)
RETRY_AFTER = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Kit:
    """The SDK-specific names a function body needs."""

    NonRetriableError: type[Exception]
    RetryAfterError: type[Exception]
    StepError: type[Exception]


OURS_KIT = Kit(inngest_mw.NonRetriableError, inngest_mw.RetryAfterError, inngest_mw.StepError)
OFFICIAL_KIT = Kit(inngest.NonRetriableError, inngest.RetryAfterError, inngest.StepError)


def _boom() -> None:
    raise ValueError("card declined")


async def _two_steps(ctx: Any, kit: Kit) -> Any:
    a = await ctx.step.run("a", lambda: ctx.event.data["x"] + 1)
    b = await ctx.step.run("b", lambda n: n * 10, a)
    return {"a": a, "b": b}


def _two_steps_sync(ctx: Any, kit: Kit) -> Any:
    a = ctx.step.run("a", lambda: ctx.event.data["x"] + 1)
    b = ctx.step.run("b", lambda n: n * 10, a)
    return {"a": a, "b": b}


async def _returns(ctx: Any, kit: Kit) -> Any:
    return {"got": ctx.event.data, "attempt": ctx.attempt}


def _returns_sync(ctx: Any, kit: Kit) -> Any:
    return {"got": ctx.event.data, "attempt": ctx.attempt}


async def _nothing(ctx: Any, kit: Kit) -> Any:
    await ctx.step.run("noop", lambda: None)


def _nothing_sync(ctx: Any, kit: Kit) -> Any:
    ctx.step.run("noop", lambda: None)


async def _sleeps(ctx: Any, kit: Kit) -> Any:
    await ctx.step.sleep("nap", SLEEP)
    return "rested"


def _sleeps_sync(ctx: Any, kit: Kit) -> Any:
    ctx.step.sleep("nap", SLEEP)
    return "rested"


async def _waits(ctx: Any, kit: Kit) -> Any:
    got = await ctx.step.wait_for_event(
        "wait", event="test/reply", if_exp="async.data.x == event.data.x", timeout=WAIT_TIMEOUT
    )
    return None if got is None else got.data


def _waits_sync(ctx: Any, kit: Kit) -> Any:
    got = ctx.step.wait_for_event(
        "wait", event="test/reply", if_exp="async.data.x == event.data.x", timeout=WAIT_TIMEOUT
    )
    return None if got is None else got.data


async def _waits_odd(ctx: Any, kit: Kit) -> Any:
    got = await ctx.step.wait_for_event("wait", event="test/reply", timeout=ODD_TIMEOUT)
    return got is None


def _waits_odd_sync(ctx: Any, kit: Kit) -> Any:
    got = ctx.step.wait_for_event("wait", event="test/reply", timeout=ODD_TIMEOUT)
    return got is None


async def _invokes(ctx: Any, kit: Kit) -> Any:
    return await ctx.step.invoke_by_id(
        "call", function_id="two-steps", data={"x": 5}, timeout=INVOKE_TIMEOUT
    )


def _invokes_sync(ctx: Any, kit: Kit) -> Any:
    return ctx.step.invoke_by_id(
        "call", function_id="two-steps", data={"x": 5}, timeout=INVOKE_TIMEOUT
    )


async def _invokes_bare(ctx: Any, kit: Kit) -> Any:
    return await ctx.step.invoke_by_id("call", function_id="returns")


def _invokes_bare_sync(ctx: Any, kit: Kit) -> Any:
    return ctx.step.invoke_by_id("call", function_id="returns")


async def _parallel(ctx: Any, kit: Kit) -> Any:
    pair = await ctx.group.parallel(
        (lambda: ctx.step.run("p1", lambda: 1), lambda: ctx.step.run("p2", lambda: 2))
    )
    return await ctx.step.run("sum", lambda: pair[0] + pair[1])


def _parallel_sync(ctx: Any, kit: Kit) -> Any:
    pair = ctx.group.parallel(
        (lambda: ctx.step.run("p1", lambda: 1), lambda: ctx.step.run("p2", lambda: 2))
    )
    return ctx.step.run("sum", lambda: pair[0] + pair[1])


async def _step_fails(ctx: Any, kit: Kit) -> Any:
    return await ctx.step.run("charge", _boom)


def _step_fails_sync(ctx: Any, kit: Kit) -> Any:
    return ctx.step.run("charge", _boom)


async def _catches(ctx: Any, kit: Kit) -> Any:
    try:
        await ctx.step.run("charge", _boom)
    except kit.StepError as exc:
        return {"caught": getattr(exc, "message", None), "name": getattr(exc, "name", None)}
    return None


def _catches_sync(ctx: Any, kit: Kit) -> Any:
    try:
        ctx.step.run("charge", _boom)
    except kit.StepError as exc:
        return {"caught": getattr(exc, "message", None), "name": getattr(exc, "name", None)}
    return None


async def _non_retriable(ctx: Any, kit: Kit) -> Any:
    raise kit.NonRetriableError("invalid input")


def _non_retriable_sync(ctx: Any, kit: Kit) -> Any:
    raise kit.NonRetriableError("invalid input")


async def _non_retriable_in_step(ctx: Any, kit: Kit) -> Any:
    def check() -> None:
        raise kit.NonRetriableError("invalid input")

    return await ctx.step.run("check", check)


def _non_retriable_in_step_sync(ctx: Any, kit: Kit) -> Any:
    def check() -> None:
        raise kit.NonRetriableError("invalid input")

    return ctx.step.run("check", check)


async def _retry_after_in_step(ctx: Any, kit: Kit) -> Any:
    def call_api() -> None:
        raise kit.RetryAfterError("slow down", RETRY_AFTER)

    return await ctx.step.run("api", call_api)


def _retry_after_in_step_sync(ctx: Any, kit: Kit) -> Any:
    def call_api() -> None:
        raise kit.RetryAfterError("slow down", RETRY_AFTER)

    return ctx.step.run("api", call_api)


async def _crashes(ctx: Any, kit: Kit) -> Any:
    raise RuntimeError("flaky")


def _crashes_sync(ctx: Any, kit: Kit) -> Any:
    raise RuntimeError("flaky")


async def _repeated(ctx: Any, kit: Kit) -> Any:
    return [await ctx.step.run("same", lambda i=i: i * 3) for i in range(3)]


def _repeated_sync(ctx: Any, kit: Kit) -> Any:
    return [ctx.step.run("same", lambda i=i: i * 3) for i in range(3)]


# fn_id -> (async body, sync body); each body takes (ctx, kit).
Body = Callable[[Any, Kit], Any]
BODIES: dict[str, tuple[Body, Body]] = {
    "two-steps": (_two_steps, _two_steps_sync),
    "returns": (_returns, _returns_sync),
    "nothing": (_nothing, _nothing_sync),
    "sleeps": (_sleeps, _sleeps_sync),
    "waits": (_waits, _waits_sync),
    "waits-odd": (_waits_odd, _waits_odd_sync),
    "invokes": (_invokes, _invokes_sync),
    "invokes-bare": (_invokes_bare, _invokes_bare_sync),
    "parallel": (_parallel, _parallel_sync),
    "step-fails": (_step_fails, _step_fails_sync),
    "catches": (_catches, _catches_sync),
    "non-retriable": (_non_retriable, _non_retriable_sync),
    "non-retriable-in-step": (_non_retriable_in_step, _non_retriable_in_step_sync),
    "retry-after-in-step": (_retry_after_in_step, _retry_after_in_step_sync),
    "crashes": (_crashes, _crashes_sync),
    "repeated": (_repeated, _repeated_sync),
}


def _bind_async(body: Body, kit: Kit) -> Callable[[Any], Any]:
    async def handler(ctx: Any) -> Any:
        return await body(ctx, kit)

    return handler


def _bind_sync(body: Body, kit: Kit) -> Callable[[Any], Any]:
    def handler(ctx: Any) -> Any:
        return body(ctx, kit)

    return handler


def _handlers(kit: Kit) -> list[tuple[str, Callable[[Any], Any]]]:
    out: list[tuple[str, Callable[[Any], Any]]] = []
    for fn_id, (async_body, sync_body) in BODIES.items():
        out.append((fn_id, _bind_async(async_body, kit)))
        out.append((f"{fn_id}-sync", _bind_sync(sync_body, kit)))
    return out


def official_app() -> fastapi.FastAPI:
    """The functions served by the official SDK (FastAPI adapter, dev mode)."""
    client = inngest.Inngest(app_id=APP_ID, is_production=False)
    trigger = inngest.TriggerEvent(event=TRIGGER_EVENT)
    fns = [
        client.create_function(fn_id=fn_id, trigger=trigger, retries=3)(handler)
        for fn_id, handler in _handlers(OFFICIAL_KIT)
    ]
    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, fns)
    return app


def our_app(**client_options: Any) -> Any:
    """The same functions served by inngest-mw (pure ASGI adapter, dev mode); ``client_options``
    go to its ``Inngest`` client."""
    client = inngest_mw.Inngest(app_id=APP_ID, is_production=False, **client_options)
    trigger = inngest_mw.TriggerEvent(event=TRIGGER_EVENT)
    fns = [
        client.create_function(fn_id=fn_id, trigger=trigger, retries=3)(handler)
        for fn_id, handler in _handlers(OURS_KIT)
    ]
    return serve_ours(client, fns)
