"""``RunLogger``: the ``ctx.logger`` a function gets, tied to one request's replay state.

It is a stdlib ``LoggerAdapter``: records carry the run's fields as ``extra`` (``inngest_run_id``,
...), and nothing is emitted while the request replays memoized steps, so a line the handler logs
appears once per run rather than once per request. The state lives on the per-request middleware
instance, never in globals or context variables, so threads and nested sends cannot disturb it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["ReplayState", "RunLogger"]


class ReplayState:
    """Whether this request has reached new code, and which step (if any) is executing."""

    __slots__ = ("live", "step_id")

    def __init__(self) -> None:
        self.live = False
        self.step_id: str | None = None


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that adds run fields and is silent while memoized steps replay."""

    def __init__(self, logger: logging.Logger, fields: Mapping[str, object], state: ReplayState):
        super().__init__(logger, fields)
        self.state = state

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (overrides the stdlib name)
        return self.state.live and self.logger.isEnabledFor(level)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        if self.state.step_id is not None:
            extra["inngest_step_id"] = self.state.step_id
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs
