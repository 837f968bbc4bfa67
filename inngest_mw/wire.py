"""What a 206 response carries: opcodes (``Opcode``), one ``Op`` per step, errors as the protocol
serializes them (``serialize_error``)."""

from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Op", "Opcode", "serialize_error"]

_NO_DATA: Final = object()


class Opcode(enum.StrEnum):
    """The opcodes this SDK reports (their values are the wire strings)."""

    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_FAILED = "StepFailed"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    """``step.ai.infer``: the server makes the inference request."""
    GATEWAY = "Gateway"
    """``step.fetch``: the server makes the HTTP request."""
    WAIT_FOR_SIGNAL = "WaitForSignal"


def serialize_error(exc: BaseException) -> dict[str, Any]:
    """``{name, message, stack}`` as the protocol carries errors."""
    name = getattr(exc, "name", None)
    if not isinstance(name, str) or not name:
        name = type(exc).__name__
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    stack = getattr(exc, "stack", None)
    if not isinstance(stack, str):
        stack = "".join(traceback.format_exception(exc)).rstrip()
    return {"name": name, "message": message, "stack": stack}


@dataclass(slots=True)
class Op:
    """One opcode of a 206 response."""

    op: Opcode
    hashed_id: str
    user_id: str
    index: int
    name: str
    display_name: str
    opts: dict[str, Any] | None = None
    data: Any = _NO_DATA
    error: dict[str, Any] | None = None
    exception: BaseException | None = None
    metadata: list[dict[str, Any]] | None = None
    """Metadata updates made in the step's handler (``ctx.metadata``), sent on the op."""

    @property
    def has_data(self) -> bool:
        return self.data is not _NO_DATA

    def fail(self, error: dict[str, Any]) -> None:
        """Report this step as failed for good instead (e.g. its output broke a protocol limit)."""
        self.op, self.data, self.error = Opcode.STEP_FAILED, _NO_DATA, error

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.hashed_id,
            "op": self.op,
            "name": self.name,
            "displayName": self.display_name,
            "userland": {"id": self.user_id, "index": self.index},
        }
        if self.opts is not None:
            out["opts"] = self.opts
        if self.data is not _NO_DATA:
            out["data"] = self.data
        if self.error is not None:
            out["error"] = self.error
        if self.metadata:
            out["metadata"] = self.metadata
        return out
