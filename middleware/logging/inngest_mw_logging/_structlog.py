"""structlog support: ``ctx[STRUCTLOG]`` is a bound structlog logger with the run's fields that,
like ``ctx.logger``, says nothing while memoized steps replay.

structlog is optional: the key is always importable, and the logger is injected only when the
middleware was given one (``LoggingMiddleware.factory(structlog_logger=structlog.get_logger())``).
"""

from __future__ import annotations

from typing import Any

from inngest_mw import ContextKey
from inngest_mw_logging._adapter import ReplayState

__all__ = ["STRUCTLOG", "ReplayAwareStructLogger"]


def _drop(*args: Any, **kwargs: Any) -> None:
    return None


class ReplayAwareStructLogger:
    """Delegates to a bound structlog logger once the request reaches new code; ``bind`` keeps
    the replay awareness."""

    __slots__ = ("_logger", "_state")

    def __init__(self, logger: Any, state: ReplayState) -> None:
        self._logger = logger
        self._state = state

    def bind(self, **fields: Any) -> ReplayAwareStructLogger:
        return ReplayAwareStructLogger(self._logger.bind(**fields), self._state)

    def __getattr__(self, name: str) -> Any:
        if not self._state.live:
            return _drop
        step = self._state.step_id
        logger = self._logger if step is None else self._logger.bind(inngest_step_id=step)
        return getattr(logger, name)


STRUCTLOG: ContextKey[ReplayAwareStructLogger] = ContextKey("inngest_mw_logging.structlog")
"""Where ``LoggingMiddleware`` puts the structlog logger: ``ctx[STRUCTLOG].info("charged", amount=3)``."""
