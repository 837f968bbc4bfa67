"""A durable function: its handler, validated options and registration JSON.

Options are validated when ``create_function`` runs (``FunctionConfigInvalidError`` names the
option); an ``on_failure`` handler becomes a second function, ``<fn_id>-failure``, triggered by
``inngest/function.failed`` for this function.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic

from inngest_mw._const import FAILURE_SUFFIX, UNSPECIFIED_STEP_ID
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
    _Opt,
)
from inngest_mw.errors import FunctionConfigInvalidError
from inngest_mw.event import EventModel
from inngest_mw.pipeline import MiddlewareFactory, PipelineSpec

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.context import Context, ContextSync

__all__ = ["Function", "FunctionOptions"]

T = TypeVar("T")
Trigger = TriggerEvent | TriggerCron
HandlerAsync = Callable[["Context"], Awaitable[Any]]
HandlerSync = Callable[["ContextSync"], Any]
Handler = HandlerAsync | HandlerSync

MAX_TRIGGERS = 10
MAX_CANCELS = 5
MAX_CONCURRENCY = 2
MAX_RETRIES = 20


class FunctionOptions(pydantic.BaseModel):
    """Everything ``create_function`` accepts besides the handler, validated as one model."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    fn_id: str
    name: str | None = None
    triggers: list[Trigger]
    retries: int | None = None
    timeouts: Timeouts | None = None
    batch_events: Batch | None = None
    concurrency: list[Concurrency] | None = None
    rate_limit: RateLimit | None = None
    throttle: Throttle | None = None
    debounce: Debounce | None = None
    cancel: list[Cancel] | None = None
    idempotency: str | None = None
    priority: Priority | None = None
    singleton: Singleton | None = None

    @pydantic.field_validator("fn_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    @pydantic.field_validator("triggers", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        items = [value] if isinstance(value, TriggerEvent | TriggerCron | type) else value
        if not isinstance(items, list | tuple):
            return items
        # An EventModel class is a trigger on its event that types ``ctx.event.data``.
        return [
            t.trigger() if isinstance(t, type) and issubclass(t, EventModel) else t for t in items
        ]

    @pydantic.field_validator("triggers")
    @classmethod
    def _check_triggers(cls, value: list[Trigger]) -> list[Trigger]:
        if not value:
            raise ValueError("at least one trigger is required")
        if len(value) > MAX_TRIGGERS:
            raise ValueError(f"at most {MAX_TRIGGERS} triggers are allowed, got {len(value)}")
        seen = set()
        for trigger in value:
            key = repr(sorted(trigger.to_wire().items()))
            if key in seen:
                raise ValueError(f"duplicate trigger {trigger.to_wire()}")
            seen.add(key)
        models = {t.model if isinstance(t, TriggerEvent) else None for t in value}
        typed = {m for m in models if m is not None}
        if typed and len(models) > 1:
            names = ", ".join(sorted(m.__name__ for m in typed))
            raise ValueError(
                f"a function triggered by an EventModel ({names}) takes only triggers on that one"
                " model, so that ctx.event.data has one type"
            )
        return value

    @property
    def event_model(self) -> type[EventModel] | None:
        """The ``EventModel`` every trigger is on, which types ``ctx.event.data``; or None."""
        first = self.triggers[0]
        return first.model if isinstance(first, TriggerEvent) else None

    @pydantic.field_validator("retries")
    @classmethod
    def _check_retries(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_RETRIES:
            raise ValueError(f"must be between 0 and {MAX_RETRIES}")
        return value

    @pydantic.field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency_list(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return [Concurrency(limit=value)]
        return [value] if isinstance(value, Concurrency) else value

    @pydantic.field_validator("concurrency")
    @classmethod
    def _check_concurrency(cls, value: list[Concurrency] | None) -> list[Concurrency] | None:
        if value is None:
            return value
        if len(value) > MAX_CONCURRENCY:
            raise ValueError(f"at most {MAX_CONCURRENCY} limits are allowed, got {len(value)}")
        if sum(1 for c in value if c.scope in (None, "fn") and not c.key) > 1:
            raise ValueError("only one function-level limit without a key is allowed")
        return value

    @pydantic.field_validator("cancel", mode="before")
    @classmethod
    def _cancel_list(cls, value: object) -> object:
        return [value] if isinstance(value, Cancel) else value

    @pydantic.field_validator("cancel")
    @classmethod
    def _check_cancel(cls, value: list[Cancel] | None) -> list[Cancel] | None:
        if value is not None and len(value) > MAX_CANCELS:
            raise ValueError(f"at most {MAX_CANCELS} cancellations are allowed, got {len(value)}")
        return value

    @pydantic.model_validator(mode="after")
    def _batch_exclusive(self) -> FunctionOptions:
        if self.batch_events is not None:
            for other in ("cancel", "debounce", "singleton", "priority"):
                if getattr(self, other):
                    raise ValueError(f"batch_events cannot be combined with {other}")
        return self

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"triggers": [t.to_wire() for t in self.triggers]}
        if self.batch_events:
            out["batchEvents"] = self.batch_events.to_wire()
        if self.cancel:
            out["cancel"] = [c.to_wire() for c in self.cancel]
        if self.concurrency:
            out["concurrency"] = [c.to_wire() for c in self.concurrency]
        if self.debounce:
            out["debounce"] = self.debounce.to_wire()
        if self.idempotency:
            out["idempotency"] = self.idempotency
        if self.priority:
            out["priority"] = self.priority.to_wire()
        if self.rate_limit:
            out["rateLimit"] = self.rate_limit.to_wire()
        if self.throttle:
            out["throttle"] = self.throttle.to_wire()
        if self.timeouts:
            out["timeouts"] = self.timeouts.to_wire()
        if self.singleton:
            out["singleton"] = self.singleton.to_wire()
        return out


def validate_options(**fields: Any) -> FunctionOptions:
    """Build ``FunctionOptions`` or raise ``FunctionConfigInvalidError`` naming the first bad field."""
    fn_id = fields.get("fn_id")
    for name, value in fields.items():
        items = value if isinstance(value, list | tuple) else [value]
        for i, item in enumerate(items):
            if isinstance(item, _Opt) and item.problem:
                where = f"{name}[{i}]" if isinstance(value, list | tuple) else name
                where = where.replace("triggers", "trigger", 1)
                raise FunctionConfigInvalidError(f"{where}: {item.problem} (function {fn_id!r})")
    try:
        return FunctionOptions(**fields)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(part) for part in err["loc"]) or "options"
        loc = loc.replace("triggers", "trigger", 1)
        message = err["msg"].removeprefix("Value error, ")
        raise FunctionConfigInvalidError(f"{loc}: {message} (function {fn_id!r})") from None


class Function(Generic[T]):
    """A function created by ``@client.create_function``; call ``get_config`` to see its registration."""

    def __init__(
        self,
        *,
        app_id: str,
        options: FunctionOptions,
        handler: Handler,
        on_failure: Handler | None,
        middleware: Sequence[MiddlewareFactory],
        output_type: object,
        client: Inngest | None = None,
        checkpointing: bool | None = None,
    ) -> None:
        self.client = client
        """The client that created this function (its middleware applies to every call)."""
        self.options = options
        self.local_id = options.fn_id
        self.id = f"{app_id}-{options.fn_id}"
        self.name = options.name or options.fn_id
        self.handler = handler
        self.on_failure = on_failure
        self.is_async = inspect.iscoroutinefunction(handler)
        self.output_type = output_type
        self.middleware = PipelineSpec(middleware)
        self.checkpointing = checkpointing
        """This function's own checkpointing choice; None leaves it to the client."""
        self.event_model = options.event_model
        """The ``EventModel`` that types ``ctx.event.data`` (read once: every call asks)."""
        if on_failure is not None and inspect.iscoroutinefunction(on_failure) != self.is_async:
            raise FunctionConfigInvalidError(
                f"on_failure: must be {'async' if self.is_async else 'sync'} like the handler "
                f"(function {options.fn_id!r})"
            )

    @property
    def on_failure_id(self) -> str | None:
        return None if self.on_failure is None else self.id + FAILURE_SUFFIX

    def get_id(self) -> str:
        return self.id

    def get_config(self, app_url: str) -> list[dict[str, Any]]:
        """Registration entries: this function and, with ``on_failure``, its failure handler."""
        main = {"id": self.id, "name": self.name, **self.options.to_wire()}
        main["steps"] = self._steps(self.id, app_url, self.options.retries)
        configs = [main]
        if self.on_failure_id is not None:
            configs.append(
                {
                    "id": self.on_failure_id,
                    "name": f"{self.name} (failure)",
                    "triggers": [
                        {
                            "event": "inngest/function.failed",
                            "expression": f"event.data.function_id == '{self.id}'",
                        }
                    ],
                    "steps": self._steps(self.on_failure_id, app_url, 0),
                }
            )
        return configs

    @staticmethod
    def _steps(fn_id: str, app_url: str, retries: int | None) -> dict[str, Any]:
        sep = "&" if "?" in app_url else "?"
        step: dict[str, Any] = {
            "id": UNSPECIFIED_STEP_ID,
            "name": UNSPECIFIED_STEP_ID,
            "runtime": {
                "type": "ws" if app_url.startswith("wss://") else "http",
                "url": f"{app_url}{sep}fnId={fn_id}&stepId={UNSPECIFIED_STEP_ID}",
            },
        }
        if retries is not None:
            step["retries"] = {"attempts": retries}
        return {UNSPECIFIED_STEP_ID: step}
