"""Middleware for the hook benchmarks: one hook each, none at all, or every hook.

Two kinds of body. A **no-op** (``return None``, ``return call_next()``) is recognised as doing
nothing and never called, like a hook left at the base class (``inngest_mw._source``). A
**trivial** body stores its argument on the instance (``self.seen = info``): the least real work,
so it is dispatched and called like any hook; it measures the dispatch itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from inngest_mw import (
    Context,
    ContextSync,
    Event,
    Function,
    Middleware,
    MiddlewareSync,
    SendEventsResult,
    StepInfo,
    StepMemos,
    TransformOutputResult,
)
from inngest_mw.handler import CommRequest, CommResponse
from inngest_mw.pipeline import ALL_HOOKS

__all__ = [
    "PER_HOOK",
    "AsyncAll",
    "AsyncNone",
    "AsyncTrivialAll",
    "SyncAll",
    "SyncNone",
    "SyncTrivialAll",
]

Ctx = Context | ContextSync


# -- one hook each ----------------------------------------------------------------------------


class AsyncOnStepStart(Middleware):
    async def on_step_start(self, info: StepInfo) -> None:
        self.seen = info


class AsyncTransformInput(Middleware):
    async def transform_input(self, ctx: Ctx, function: Function[Any], steps: StepMemos) -> None:
        self.seen = ctx


class AsyncWrapStep(Middleware):
    async def wrap_step(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        self.seen = info
        return await call_next()


class SyncOnStepStart(MiddlewareSync):
    def on_step_start(self, info: StepInfo) -> None:
        self.seen = info


class SyncTransformInput(MiddlewareSync):
    def transform_input(self, ctx: Ctx, function: Function[Any], steps: StepMemos) -> None:
        self.seen = ctx


class SyncWrapStep(MiddlewareSync):
    def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        self.seen = info
        return call_next()


PER_HOOK: dict[str, tuple[str, type[Middleware], type[MiddlewareSync]]] = {
    "on_step_start": ("observer", AsyncOnStepStart, SyncOnStepStart),
    "transform_input": ("transform", AsyncTransformInput, SyncTransformInput),
    "wrap_step": ("wrap", AsyncWrapStep, SyncWrapStep),
}
"""hook -> (kind, async trivial class, sync trivial class)."""


# -- none / all -------------------------------------------------------------------------------


class AsyncNone(Middleware):
    """Overrides no hook: costs only its per-request instance."""


class SyncNone(MiddlewareSync):
    """Overrides no hook: costs only its per-request instance."""


class AsyncAll(Middleware):
    """Overrides every hook with a no-op."""

    async def transform_input(self, ctx: Ctx, function: Function[Any], steps: StepMemos) -> None:
        return None

    async def after_memoization(self) -> None:
        return None

    async def before_execution(self) -> None:
        return None

    async def after_execution(self) -> None:
        return None

    async def transform_output(self, result: TransformOutputResult) -> None:
        return None

    async def before_response(self) -> None:
        return None

    async def on_run_start(self, ctx: Ctx) -> None:
        return None

    async def on_run_complete(self, ctx: Ctx, output: Any) -> None:
        return None

    async def on_run_error(self, ctx: Ctx, error: BaseException, is_final_attempt: bool) -> None:
        return None

    async def transform_step_input(self, info: StepInfo) -> None:
        return None

    async def on_step_start(self, info: StepInfo) -> None:
        return None

    async def on_step_complete(self, info: StepInfo, output: Any) -> None:
        return None

    async def on_step_error(
        self, info: StepInfo, error: BaseException, is_final_attempt: bool
    ) -> None:
        return None

    async def wrap_request(
        self, call_next: Callable[[], Awaitable[CommResponse]], request: CommRequest
    ) -> CommResponse:
        return await call_next()

    async def wrap_function(self, call_next: Callable[[], Awaitable[Any]], ctx: Ctx) -> Any:
        return await call_next()

    async def wrap_step(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        return await call_next()

    async def wrap_step_handler(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        return await call_next()

    async def wrap_send(
        self, call_next: Callable[[], Awaitable[list[str]]], events: list[Event]
    ) -> list[str]:
        return await call_next()

    async def before_send_events(self, events: list[Event]) -> list[Event] | None:
        return None

    async def after_send_events(self, result: SendEventsResult) -> None:
        return None


class SyncAll(MiddlewareSync):
    """Overrides every hook with a no-op."""

    def transform_input(self, ctx: Ctx, function: Function[Any], steps: StepMemos) -> None:
        return None

    def after_memoization(self) -> None:
        return None

    def before_execution(self) -> None:
        return None

    def after_execution(self) -> None:
        return None

    def transform_output(self, result: TransformOutputResult) -> None:
        return None

    def before_response(self) -> None:
        return None

    def on_run_start(self, ctx: Ctx) -> None:
        return None

    def on_run_complete(self, ctx: Ctx, output: Any) -> None:
        return None

    def on_run_error(self, ctx: Ctx, error: BaseException, is_final_attempt: bool) -> None:
        return None

    def transform_step_input(self, info: StepInfo) -> None:
        return None

    def on_step_start(self, info: StepInfo) -> None:
        return None

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        return None

    def on_step_error(self, info: StepInfo, error: BaseException, is_final_attempt: bool) -> None:
        return None

    def wrap_request(
        self, call_next: Callable[[], CommResponse], request: CommRequest
    ) -> CommResponse:
        return call_next()

    def wrap_function(self, call_next: Callable[[], Any], ctx: Ctx) -> Any:
        return call_next()

    def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        return call_next()

    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        return call_next()

    def wrap_send(self, call_next: Callable[[], list[str]], events: list[Event]) -> list[str]:
        return call_next()

    def before_send_events(self, events: list[Event]) -> list[Event] | None:
        return None

    def after_send_events(self, result: SendEventsResult) -> None:
        return None


# -- every hook, trivial bodies -----------------------------------------------------------------


async def _async_trivial(self: Any, *args: Any) -> None:
    self.seen = args


async def _async_trivial_wrap(self: Any, call_next: Callable[[], Awaitable[Any]], arg: Any) -> Any:
    self.seen = arg
    return await call_next()


def _sync_trivial(self: Any, *args: Any) -> None:
    self.seen = args


def _sync_trivial_wrap(self: Any, call_next: Callable[[], Any], arg: Any) -> Any:
    self.seen = arg
    return call_next()


def _every_hook(base: type, plain: Callable[..., Any], wrap: Callable[..., Any]) -> type:
    hooks = {name: wrap if name.startswith("wrap_") else plain for name in ALL_HOOKS}
    return type(f"{base.__name__}TrivialAll", (base,), hooks)


AsyncTrivialAll: type[Middleware] = _every_hook(Middleware, _async_trivial, _async_trivial_wrap)
"""Overrides every hook with a trivial body."""
SyncTrivialAll: type[MiddlewareSync] = _every_hook(
    MiddlewareSync, _sync_trivial, _sync_trivial_wrap
)
"""Overrides every hook with a trivial body."""
