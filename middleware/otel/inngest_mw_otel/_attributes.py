"""Attribute names the middleware records, and the small derivations they need.

OpenTelemetry semantic-convention names are used where they exist (``faas.*``, ``messaging.*``,
``code.function.name``, ``error.type``); Inngest's own identifiers live under ``inngest.*``. The
names are spelled out here rather than imported, so only ``opentelemetry-api`` is required.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

APP_ID: Final = "inngest.app.id"
FUNCTION_ID: Final = "inngest.function.id"
RUN_ID: Final = "inngest.run.id"
ATTEMPT: Final = "inngest.attempt"
FINAL_ATTEMPT: Final = "inngest.final_attempt"
EVENT_NAME: Final = "inngest.event.name"
EVENT_ID: Final = "inngest.event.id"
STEPS_MEMOIZED: Final = "inngest.steps.memoized"
STEP_ID: Final = "inngest.step.id"
STEP_KIND: Final = "inngest.step.kind"
STEP_INDEX: Final = "inngest.step.index"
STEP_OP: Final = "inngest.step.op"

FAAS_TRIGGER: Final = "faas.trigger"
FAAS_INVOCATION_ID: Final = "faas.invocation_id"
CODE_FUNCTION: Final = "code.function.name"
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"

MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION: Final = "messaging.destination.name"
MESSAGING_BATCH_COUNT: Final = "messaging.batch.message_count"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"

_CRON_EVENT: Final = "inngest/scheduled.timer"


def error_type(error: BaseException) -> str:
    """A low-cardinality name for the error: the class, qualified unless it is a builtin."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def faas_trigger(event_name: str) -> str:
    """``timer`` for cron-started runs, ``pubsub`` for runs started by an event (or an invoke)."""
    return "timer" if event_name == _CRON_EVENT else "pubsub"


def code_function(handler: Callable[..., Any]) -> str:
    module = getattr(handler, "__module__", None) or ""
    name = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{module}.{name}" if module else name
