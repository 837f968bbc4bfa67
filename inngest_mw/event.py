"""The event model users send and functions receive."""

from __future__ import annotations

from typing import Any

import pydantic

__all__ = ["Event", "SendEventsResult"]


class Event(pydantic.BaseModel):
    """An Inngest event. ``id`` makes sends idempotent; ``ts`` (ms) defaults to the send time."""

    model_config = pydantic.ConfigDict(extra="ignore", validate_assignment=True)

    name: str
    data: dict[str, Any] = pydantic.Field(default_factory=dict)
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
        out: dict[str, Any] = {"name": self.name, "data": self.data}
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
