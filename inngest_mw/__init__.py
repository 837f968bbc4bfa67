"""inngest-mw: a middleware-centric Python SDK for Inngest durable functions.

``Inngest(app_id=...)`` defines functions with ``@client.create_function(...)``; steps live on
``ctx.step``; every execution and every send passes through the ordered hook pipeline
(``Middleware`` / ``MiddlewareSync``). Serve with an adapter such as ``inngest_mw_asgi.serve``.
"""

from inngest_mw import ai, realtime
from inngest_mw._const import VERSION
from inngest_mw.client import Inngest
from inngest_mw.config import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from inngest_mw.context import Context, ContextKey, ContextSync
from inngest_mw.errors import (
    ConfigError,
    Error,
    EventDataInvalidError,
    EventValidationError,
    NonRetriableError,
    RetryAfterError,
    SendEventsError,
    SendSignalError,
    SignalNotFoundError,
    StepError,
)
from inngest_mw.event import Event, EventModel, SendEventsResult
from inngest_mw.fetch import FetchResponse
from inngest_mw.function import Function
from inngest_mw.handler import CommHandler, CommRequest, CommResponse, resolve_serve_path
from inngest_mw.memo import Memo, StepMemos
from inngest_mw.metadata import Metadata, MetadataError, MetadataSync, UpdateMetadataError
from inngest_mw.pipeline import (
    Middleware,
    MiddlewareFactory,
    MiddlewareSync,
    StepInfo,
    TransformOutputResult,
)
from inngest_mw.realtime import StepRealtime, StepRealtimeSync
from inngest_mw.serializer import PydanticSerializer, Serializer
from inngest_mw.signals import Signal
from inngest_mw.step import (
    Group,
    GroupSync,
    InvokeByIdOptions,
    InvokeOptions,
    Step,
    StepAI,
    StepAISync,
    StepSync,
    WaitForEventOptions,
)
from inngest_mw.stepkind import StepKind
from inngest_mw.wire import Opcode

__version__ = VERSION


__all__ = [
    "Batch",
    "Cancel",
    "CommHandler",
    "CommRequest",
    "CommResponse",
    "Concurrency",
    "ConfigError",
    "Context",
    "ContextKey",
    "ContextSync",
    "Debounce",
    "Error",
    "Event",
    "EventDataInvalidError",
    "EventModel",
    "EventValidationError",
    "FetchResponse",
    "Function",
    "Group",
    "GroupSync",
    "Inngest",
    "InvokeByIdOptions",
    "InvokeOptions",
    "Memo",
    "Metadata",
    "MetadataError",
    "MetadataSync",
    "Middleware",
    "MiddlewareFactory",
    "MiddlewareSync",
    "NonRetriableError",
    "Opcode",
    "Priority",
    "PydanticSerializer",
    "RateLimit",
    "RetryAfterError",
    "SendEventsError",
    "SendEventsResult",
    "SendSignalError",
    "Serializer",
    "Signal",
    "SignalNotFoundError",
    "Singleton",
    "Step",
    "StepAI",
    "StepAISync",
    "StepError",
    "StepInfo",
    "StepKind",
    "StepMemos",
    "StepRealtime",
    "StepRealtimeSync",
    "StepSync",
    "Throttle",
    "Timeouts",
    "TransformOutputResult",
    "TriggerCron",
    "TriggerEvent",
    "UpdateMetadataError",
    "WaitForEventOptions",
    "__version__",
    "ai",
    "realtime",
    "resolve_serve_path",
]
