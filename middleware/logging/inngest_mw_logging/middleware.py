"""``LoggingMiddleware``: ``ctx.logger`` with run context, silent during replay; failures logged once.

Replay ends at ``before_execution`` (the first code that has not run before). Each failed step
attempt and each failed run attempt is logged exactly once, by the request in which it failed: a
WARNING when a retry follows, an ERROR with the traceback when it was the final attempt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from inngest_mw import MiddlewareSync
from inngest_mw_logging._adapter import ReplayState, RunLogger
from inngest_mw_logging._structlog import STRUCTLOG, ReplayAwareStructLogger

if TYPE_CHECKING:
    from inngest_mw import Context, ContextSync, Function, Inngest, StepInfo, StepMemos

__all__ = ["LoggingMiddleware"]


class LoggingMiddleware(MiddlewareSync):
    """``Inngest(middleware=[LoggingMiddleware])``; ``LoggingMiddleware.factory(logger=...)`` picks
    the logger (default: the client's ``logger``); ``factory(structlog_logger=structlog.get_logger())``
    also injects a replay-aware structlog logger as ``ctx[STRUCTLOG]``."""

    def __init__(
        self,
        client: Inngest,
        raw_request: object,
        *,
        logger: logging.Logger | None = None,
        structlog_logger: Any = None,
    ) -> None:
        super().__init__(client, raw_request)
        self._logger = logger or client.logger
        self._structlog = structlog_logger
        self._state = ReplayState()
        self._fields: dict[str, object] = {"inngest_app_id": client.app_id}

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        self._fields.update(
            inngest_function_id=function.id,
            inngest_run_id=ctx.run_id,
            inngest_attempt=ctx.attempt,
            inngest_event_name=ctx.event.name,
        )
        ctx.logger = RunLogger(self._logger, self._fields, self._state)
        if self._structlog is not None:
            bound = self._structlog.bind(**self._fields)
            ctx.set(STRUCTLOG, ReplayAwareStructLogger(bound, self._state))

    def before_execution(self) -> None:
        self._state.live = True

    def on_step_start(self, info: StepInfo) -> None:
        self._state.step_id = info.id

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        self._state.step_id = None

    def on_step_error(self, info: StepInfo, error: BaseException, is_final_attempt: bool) -> None:
        self._state.step_id = None
        self._failed(f"step {info.id!r}", error, is_final_attempt, {"inngest_step_id": info.id})

    def on_run_error(
        self, ctx: Context | ContextSync, error: BaseException, is_final_attempt: bool
    ) -> None:
        self._failed(f"function {ctx.function_id!r}", error, is_final_attempt, {})

    def _failed(
        self, what: str, error: BaseException, final: bool, extra: dict[str, object]
    ) -> None:
        fields = {**self._fields, **extra}
        attempt = fields.get("inngest_attempt")
        if final:
            self._logger.error(
                "%s failed on attempt %s: %s: %s",
                what,
                attempt,
                type(error).__name__,
                error,
                exc_info=error,
                extra=fields,
            )
        else:
            self._logger.warning(
                "%s failed on attempt %s and will be retried: %s: %s",
                what,
                attempt,
                type(error).__name__,
                error,
                extra=fields,
            )
