"""What a function handler receives: the event(s), run metadata, the step tools and typed values
that middleware injected (``ContextKey``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, overload

from typing_extensions import TypeVar

from inngest_mw import realtime as _realtime
from inngest_mw.errors import is_last_attempt
from inngest_mw.event import Event

if TYPE_CHECKING:
    from inngest_mw.metadata import Metadata, MetadataSync
    from inngest_mw.step import Group, GroupSync, Step, StepSync

__all__ = ["Context", "ContextKey", "ContextSync"]

T = TypeVar("T")
D = TypeVar("D")
E = TypeVar("E", default=dict[str, Any])
"""The event data's type: a ``dict``, or the ``EventModel`` the function is triggered by."""
_MISSING: Any = object()


class ContextKey(Generic[T]):
    """A typed slot for dependency injection: middleware calls ``ctx.set(DB, db)`` in
    ``transform_input`` and the handler reads ``ctx.get(DB)`` (or ``ctx[DB]``), typed as ``T``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ContextKey({self.name!r})"


@dataclass(slots=True, kw_only=True)
class _ContextBase(Generic[E]):
    event: Event[E]
    events: list[Event[E]]
    run_id: str
    attempt: int
    max_attempts: int | None
    function_id: str
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    request_id: str | None = None
    job_id: str | None = None
    _values: dict[ContextKey[Any], Any] = field(default_factory=dict, repr=False)

    @property
    def is_final_attempt(self) -> bool:
        return is_last_attempt(self.attempt, self.max_attempts)

    def set(self, key: ContextKey[T], value: T) -> None:
        self._values[key] = value

    @overload
    def get(self, key: ContextKey[T]) -> T: ...
    @overload
    def get(self, key: ContextKey[T], default: D) -> T | D: ...
    def get(self, key: ContextKey[T], default: Any = _MISSING) -> Any:
        """The value injected under ``key``; ``KeyError`` naming it when absent and no default."""
        try:
            return self._values[key]
        except KeyError:
            if default is _MISSING:
                raise KeyError(
                    f"{key!r} was not set: add the middleware that provides it to the client "
                    "or function"
                ) from None
            return default

    def __getitem__(self, key: ContextKey[T]) -> T:
        return self.get(key)


@dataclass(slots=True, kw_only=True)
class Context(_ContextBase[E]):
    """Context of an async function: ``await ctx.step.run(...)``. ``Context[OrderPaid]`` for a
    function triggered by the ``EventModel`` ``OrderPaid``: ``ctx.event.data`` is one."""

    step: Step
    group: Group
    metadata: Metadata
    """Run and step metadata: ``await ctx.metadata.update({...}, kind="progress")``."""

    async def publish(self, channel: str, topic: str, data: object) -> None:
        """Publish ``data`` to ``topic`` of ``channel`` now, tagged with this run. Not a step:
        it publishes again each time the function body replays (``step.realtime.publish``
        publishes once per run)."""
        await _realtime.publish(self.step._client, channel, topic, data, run_id=self.run_id or None)


@dataclass(slots=True, kw_only=True)
class ContextSync(_ContextBase[E]):
    """Context of a sync function: ``ctx.step.run(...)`` (``ContextSync[OrderPaid]``: see
    ``Context``)."""

    step: StepSync
    group: GroupSync
    metadata: MetadataSync
    """Run and step metadata: ``ctx.metadata.update({...}, kind="progress")``."""

    def publish(self, channel: str, topic: str, data: object) -> None:
        """Publish ``data`` to ``topic`` of ``channel`` now, tagged with this run. Not a step:
        it publishes again each time the function body replays (``step.realtime.publish``
        publishes once per run)."""
        _realtime.publish_sync(self.step._client, channel, topic, data, run_id=self.run_id or None)
