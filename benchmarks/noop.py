"""No-op middleware for the hook benchmarks: one hook each, none at all, or every hook.

Every overridden hook does the least its kind allows: observers and transforms return ``None``,
wrap hooks return ``call_next()``.
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

__all__ = [
    "PER_HOOK",
    "AsyncAll",
    "AsyncNone",
    "SyncAll",
    "SyncNone",
]

Ctx = Context | ContextSync


# -- one hook each ----------------------------------------------------------------------------


class AsyncOnStepStart(Middleware):
    async def on_step_start(self, info: StepInfo) -> None:
        return None


class AsyncTransformInput(Middleware):
    async def transform_input(self, ctx: Ctx, function: Function[Any], steps: StepMemos) -> None:
        return None


class AsyncWrapStep(Middleware):
    async def wrap_step(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        return await call_next()


class SyncOnStepStart(MiddlewareSync):
    def on_step_start(self, info: StepInfo) -> None:
        return None


class SyncTransformInput(MiddlewareSync):
    def transform_input(self, ctx: Ctx, function: Function[Any], steps: StepMemos) -> None:
        return None


class SyncWrapStep(MiddlewareSync):
    def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        return call_next()


PER_HOOK: dict[str, tuple[str, type[Middleware], type[MiddlewareSync]]] = {
    "on_step_start": ("observer", AsyncOnStepStart, SyncOnStepStart),
    "transform_input": ("transform", AsyncTransformInput, SyncTransformInput),
    "wrap_step": ("wrap", AsyncWrapStep, SyncWrapStep),
}
"""hook -> (kind, async no-op class, sync no-op class)."""


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
