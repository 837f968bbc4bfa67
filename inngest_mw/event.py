"""The event model users send and functions receive, and typed events (``EventModel``).

``Event`` is generic in its ``data``: plain ``Event`` carries a ``dict``; ``Event[OrderPaid]``
carries a validated ``OrderPaid``. An ``EventModel`` subclass declares an event's name and its
data's schema once; sending one (or a plain ``Event`` of that name) validates it before anything
leaves the process, and a function triggered by it gets ``ctx.event.data`` as the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeAlias

import pydantic
from typing_extensions import TypeVar

from inngest_mw.errors import EventDataInvalidError, EventValidationError

__all__ = ["Event", "EventModel", "SendEventsResult", "Sendable", "to_events", "typed_event"]

D = TypeVar("D", default=dict[str, Any])
M = TypeVar("M", bound="EventModel")


class Event(pydantic.BaseModel, Generic[D]):
    """An Inngest event. ``id`` makes sends idempotent; ``ts`` (ms) defaults to the send time."""

    model_config = pydantic.ConfigDict(extra="ignore", validate_assignment=True)

    name: str
    data: D = pydantic.Field(default_factory=dict)  # type: ignore[assignment]
    id: str = ""
    ts: int = 0
    user: dict[str, Any] | None = None
    v: str | None = None

    @pydantic.field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @pydantic.field_validator("name")
    @classmethod
    def _name_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("event name must not be empty")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent to the event API (empty ``id``/unset fields left out)."""
        data = self.data
        wire_data = data.model_dump(mode="json") if isinstance(data, pydantic.BaseModel) else data
        out: dict[str, Any] = {"name": self.name, "data": wire_data}
        if self.id:
            out["id"] = self.id
        if self.ts:
            out["ts"] = self.ts
        if self.user is not None:
            out["user"] = self.user
        if self.v is not None:
            out["v"] = self.v
        return out


class SendEventsResult(pydantic.BaseModel):
    """What ``after_send_events`` sees: the accepted IDs and the error, if any."""

    ids: list[str] = pydantic.Field(default_factory=list)
    error: str | None = None


class EventModel(pydantic.BaseModel):
    """An event's data schema and name: ``class OrderPaid(EventModel, name="shop/order.paid")``.

    An instance is the event's data; ``client.send(OrderPaid(order="A-1"))`` sends it. Use the
    class as a trigger (``trigger=OrderPaid``, or ``OrderPaid.trigger(expression=...)``) and
    annotate the handler's ``ctx: Context[OrderPaid]``; ``wait_for_event(event=OrderPaid, ...)``
    returns ``Event[OrderPaid]``.
    """

    event_name: ClassVar[str]
    _by_name: ClassVar[dict[str, type[EventModel]]] = {}

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            if not hasattr(cls, "event_name"):
                raise TypeError(
                    f"{cls.__name__}: an EventModel needs its event's name, e.g. "
                    f'class {cls.__name__}(EventModel, name="shop/order.paid")'
                )
            return  # a subclass of a named model: the same event
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{cls.__name__}: the event name must be a non-empty string")
        known = EventModel._by_name.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"{cls.__name__}: event {name!r} is already declared by {known.__qualname__}"
            )
        cls.event_name = name
        EventModel._by_name[name] = cls

    @classmethod
    def model_for(cls, name: str) -> type[EventModel] | None:
        """The model declared for event ``name``, if any."""
        return EventModel._by_name.get(name)

    @classmethod
    def trigger(cls, *, expression: str | None = None) -> Any:
        """A ``TriggerEvent`` on this event that types the handler's ``ctx.event.data``."""
        from inngest_mw.config import TriggerEvent

        return TriggerEvent.typed(cls, expression)

    def to_event(
        self, *, id: str = "", ts: int = 0, user: dict[str, Any] | None = None
    ) -> Event[Any]:
        """This data as an ``Event`` of the model's name, ready to send."""
        typed: Any = Event[type(self)]  # type: ignore[misc]
        event: Event[Any] = typed(name=self.event_name, data=self, id=id, ts=ts, user=user)
        return event


def _fields(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "data"
        parts.append(f"data.{where}: {error['msg']}")
    more = exc.error_count() - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def typed_event(event: Event[Any], model: type[M]) -> Event[M]:
    """``event`` with its data validated as ``model``; ``EventValidationError`` naming the
    field when it does not validate (a non-retriable error: the event will not change)."""
    if isinstance(event.data, model):
        return event
    try:
        data = model.model_validate(event.data)
    except pydantic.ValidationError as exc:
        raise EventValidationError(
            f"event {event.name!r} does not match {model.__name__}: {_fields(exc)}"
        ) from None
    return Event[model](  # type: ignore[valid-type]
        name=event.name, data=data, id=event.id, ts=event.ts, user=event.user, v=event.v
    )


Sendable: TypeAlias = "Event[Any] | EventModel | Sequence[Event[Any] | EventModel]"
"""What ``send`` and ``step.send_event`` take: events, typed event data, or a list of either."""


def to_events(events: Sendable) -> list[Event]:
    """What a send takes, as events with plain data, each checked against its declared model
    before it leaves: ``EventDataInvalidError`` names the event and the field."""
    batch = [events] if isinstance(events, Event | EventModel) else list(events)
    out: list[Event] = []
    for item in batch:
        event = item.to_event() if isinstance(item, EventModel) else item
        if isinstance(event.data, pydantic.BaseModel):
            # Sent, and seen by send hooks, with plain JSON data like every other event.
            plain = event.data.model_dump(mode="json")
            event = Event(
                name=event.name, data=plain, id=event.id, ts=event.ts, user=event.user, v=event.v
            )
        model = EventModel.model_for(event.name)
        if model is not None:
            try:
                model.model_validate(event.data)
            except pydantic.ValidationError as exc:
                raise EventDataInvalidError(
                    f"event {event.name!r} does not match {model.__name__}: {_fields(exc)}"
                ) from None
        out.append(event)
    return out
