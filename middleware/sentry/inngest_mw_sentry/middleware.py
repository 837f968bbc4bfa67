"""``SentryMiddleware``: retry-aware error reports, a transaction per request and a span per step.

Each request gets its own isolation scope (tags never leak between concurrent requests) and its own
transaction; each executed step attempt is a child span, each step call a breadcrumb. A run error is
reported once, on the final attempt unless configured otherwise, and events are flushed before the
response leaves, because serverless hosts may freeze the process right after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import sentry_sdk
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.tracing import NoOpSpan, Transaction, TransactionSource
from sentry_sdk.utils import event_from_exception

from inngest_mw import MiddlewareSync, StepError

if TYPE_CHECKING:
    from inngest_mw import (
        CommRequest,
        CommResponse,
        Context,
        ContextSync,
        Function,
        Inngest,
        StepInfo,
        StepMemos,
    )

__all__ = ["SentryMiddleware"]

APP_ID: Final = "inngest.app.id"
FUNCTION_ID: Final = "inngest.function.id"
RUN_ID: Final = "inngest.run.id"
EVENT_NAME: Final = "inngest.event.name"
EVENT_ID: Final = "inngest.event.id"
ATTEMPT: Final = "inngest.attempt"
STEP_ID: Final = "inngest.step.id"
MECHANISM: Final = {"type": "inngest", "handled": False}

# The core logs every failed request at ERROR on "inngest_mw"; Sentry's logging integration would
# turn each into an event on every attempt, defeating the final-attempt-only reporting below.
ignore_logger("inngest_mw")


class SentryMiddleware(MiddlewareSync):
    """Report errors to the Sentry client set up with ``sentry_sdk.init``.

    ``capture_every_attempt``: report run errors on every attempt, not only the final one.
    ``capture_step_errors``: also report a step's own exception when the step fails (then the
    ``StepError`` it later raises in the function is not reported a second time).
    ``flush_timeout``: seconds to wait for the transport before each response.
    """

    def __init__(
        self,
        client: Inngest,
        raw_request: object,
        *,
        capture_every_attempt: bool = False,
        capture_step_errors: bool = False,
        flush_timeout: float = 2.0,
    ) -> None:
        super().__init__(client, raw_request)
        self._every_attempt = capture_every_attempt
        self._step_errors = capture_step_errors
        self._flush_timeout = flush_timeout
        self._scope: sentry_sdk.Scope | None = None
        self._transaction: Transaction | NoOpSpan | None = None

    @contextlib.contextmanager
    def _request_scope(self, request: CommRequest) -> Iterator[Transaction | NoOpSpan]:
        """An isolation scope and a transaction around one request (flushing is the caller's)."""
        try:
            with sentry_sdk.isolation_scope() as scope:
                self._scope = scope
                scope.set_tag(APP_ID, self.client.app_id)
                transaction = sentry_sdk.start_transaction(
                    op="queue.task.inngest",
                    name=request.query.get("fnId") or "inngest",
                    source=TransactionSource.TASK,
                    origin="auto.function.inngest",
                )
                self._transaction = transaction
                with transaction:
                    yield transaction
        finally:
            self._scope = self._transaction = None

    def wrap_request(
        self, call_next: Callable[[], CommResponse], request: CommRequest
    ) -> CommResponse:
        try:
            with self._request_scope(request) as transaction:
                response = call_next()
                transaction.set_http_status(response.status)
                return response
        finally:
            sentry_sdk.flush(timeout=self._flush_timeout)

    async def wrap_request_async(
        self, call_next: Callable[[], Awaitable[CommResponse]], request: CommRequest
    ) -> CommResponse:
        """The async twin of ``wrap_request``: no thread hop, and the flush waits off the loop."""
        try:
            with self._request_scope(request) as transaction:
                response = await call_next()
                transaction.set_http_status(response.status)
                return response
        finally:
            await asyncio.to_thread(sentry_sdk.flush, timeout=self._flush_timeout)

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        if isinstance(self._transaction, Transaction):
            self._transaction.name = function.id
        if self._scope is None:
            return
        self._scope.set_tag(FUNCTION_ID, function.id)
        self._scope.set_tag(RUN_ID, ctx.run_id)
        self._scope.set_tag(EVENT_NAME, ctx.event.name)
        self._scope.set_tag(ATTEMPT, str(ctx.attempt))
        if ctx.event.id:
            self._scope.set_tag(EVENT_ID, ctx.event.id)
        self._scope.set_context(
            "inngest",
            {
                "function_name": function.name,
                "attempt": ctx.attempt,
                "max_attempts": ctx.max_attempts,
                "memoized_steps": len(steps),
                "event_count": len(ctx.events),
            },
        )

    def transform_step_input(self, info: StepInfo) -> None:
        if self._scope is not None:
            self._scope.add_breadcrumb(
                category="inngest.step",
                message=f"step {info.id}",
                data={"kind": info.kind, "memoized": info.memoized, "index": info.index},
            )

    @contextlib.contextmanager
    def _step_span(self, info: StepInfo) -> Iterator[None]:
        if self._scope is not None:
            self._scope.set_tag(STEP_ID, info.id)
        with sentry_sdk.start_span(op="inngest.step", name=info.id) as span:
            span.set_data("inngest.step.kind", info.kind)
            span.set_data("inngest.attempt", info.attempt)
            try:
                yield
            except BaseException:
                span.set_status("internal_error")
                raise
        # Kept on failure, so a report about the step carries it; cleared before the next step.
        if self._scope is not None:
            self._scope.remove_tag(STEP_ID)

    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        with self._step_span(info):
            return call_next()

    async def wrap_step_handler_async(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        with self._step_span(info):
            return await call_next()

    def on_step_error(self, info: StepInfo, error: BaseException, is_final_attempt: bool) -> None:
        if self._scope is None:
            return
        self._scope.add_breadcrumb(
            category="inngest.step",
            message=f"step {info.id} failed: {type(error).__name__}",
            level="error",
            data={"attempt": info.attempt, "final_attempt": is_final_attempt},
        )
        if self._step_errors and (is_final_attempt or self._every_attempt):
            self._capture(error)

    def on_run_error(
        self, ctx: Context | ContextSync, error: BaseException, is_final_attempt: bool
    ) -> None:
        if isinstance(error, StepError) and self._step_errors:
            return
        if is_final_attempt or self._every_attempt:
            self._capture(error)

    def _capture(self, error: BaseException) -> None:
        if self._scope is None:
            return
        options = sentry_sdk.get_client().options
        event, hint = event_from_exception(error, client_options=options, mechanism=MECHANISM)
        self._scope.capture_event(event, hint=hint)
