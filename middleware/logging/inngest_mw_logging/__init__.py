"""Replay-aware logging for inngest-mw: ``Inngest(middleware=[LoggingMiddleware])``.

``ctx.logger`` carries the run's fields and logs each line once per run, not once per request;
step and run failures are logged once per failed attempt.
"""

from inngest_mw_logging._adapter import ReplayState, RunLogger
from inngest_mw_logging._structlog import STRUCTLOG, ReplayAwareStructLogger
from inngest_mw_logging.middleware import LoggingMiddleware

__all__ = ["STRUCTLOG", "LoggingMiddleware", "ReplayAwareStructLogger", "ReplayState", "RunLogger"]
