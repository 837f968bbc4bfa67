"""The I/O-free step engine shared by the async and sync step faces (the sans-I/O pattern of h11).

It owns one request's memo table (keyed by hashed step ID; O(1) lookup and consume), the counter
that suffixes repeated IDs, and the decision for each step call: return the memoized value, run
the step now, plan it, report its opcode, or skip it because another step is targeted.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "Decision",
    "Memo",
    "Op",
    "Opcode",
    "PlannedInterrupt",
    "ResponseInterrupt",
    "SkipInterrupt",
    "StepCore",
    "StepMemos",
    "hash_step_id",
    "parse_memos",
    "serialize_error",
]

_log = logging.getLogger("inngest_mw")


class Opcode:
    STEP_RUN: Final = "StepRun"
    STEP_ERROR: Final = "StepError"
    STEP_FAILED: Final = "StepFailed"
    STEP_PLANNED: Final = "StepPlanned"
    SLEEP: Final = "Sleep"
    WAIT_FOR_EVENT: Final = "WaitForEvent"
    INVOKE: Final = "InvokeFunction"


RUN_KINDS: Final = frozenset({"run", "send_event"})
_NO_DATA: Final = object()


@functools.lru_cache(maxsize=8192)
def hash_step_id(step_id: str) -> str:
    """Lowercase hex SHA-1 of the user-facing step ID, identical across Inngest SDKs."""
    return hashlib.sha1(step_id.encode()).hexdigest()


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
class Memo:
    """One memoized step outcome; middleware may replace ``data``/``error`` in ``transform_input``."""

    data: Any = None
    error: dict[str, Any] | None = None


class StepMemos(Mapping[str, Memo]):
    """The request's memoized steps by hashed ID, as handed to ``transform_input``."""

    __slots__ = ("_table",)

    def __init__(self, table: dict[str, Memo]) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Memo:
        return self._table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    @property
    def size(self) -> int:
        return len(self._table)

    def pop(self, key: str) -> Memo | None:
        return self._table.pop(key, None)


def parse_memos(raw: object) -> dict[str, Memo]:
    """Normalize the call body's ``steps``: ``{data}``, ``{error}``, ``null`` and raw events.

    ``{"input": ...}`` entries describe steps that have not finished and are not memoized results.
    """
    if not isinstance(raw, dict):
        return {}
    table: dict[str, Memo] = {}
    for key, value in raw.items():
        if type(value) is dict:
            if len(value) == 1 and "data" in value:  # the common case: a step's result
                table[key] = Memo(data=value["data"])
                continue
            keys = value.keys()
            if keys <= {"data", "error"} and keys:
                error = value.get("error")
                if error is not None:
                    table[key] = Memo(
                        error=error if isinstance(error, dict) else {"message": str(error)}
                    )
                else:
                    table[key] = Memo(data=value.get("data"))
                continue
            if keys == {"input"} or keys == {"type", "input"}:
                continue
        table[key] = Memo(data=value)
    return table


@dataclass(slots=True)
class Op:
    """One opcode of a 206 response."""

    op: str
    hashed_id: str
    user_id: str
    index: int
    name: str
    display_name: str
    opts: dict[str, Any] | None = None
    data: Any = _NO_DATA
    error: dict[str, Any] | None = None
    exception: BaseException | None = None

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
        return out


class _Interrupt(BaseException):
    """Control flow of the step engine; derives from BaseException so ``except Exception`` in user
    code cannot swallow it."""


class ResponseInterrupt(_Interrupt):
    """The request is over: respond with the ops collected on the ``StepCore``."""


class PlannedInterrupt(_Interrupt):
    """A parallel branch reached a new step; the group collects it and moves to the next branch."""


class SkipInterrupt(_Interrupt):
    """A new step that is not the targeted one; the branch stops here."""


class Decision(enum.Enum):
    EXECUTE = "execute"
    PLAN = "plan"
    REPORT = "report"
    SKIP = "skip"


@dataclass(slots=True)
class StepCore:
    """Per-request step state; faces call ``resolve_id``, ``take`` and ``decide`` for each step."""

    memos: dict[str, Memo]
    target: str | None = None
    disable_immediate: bool = False
    stack: list[str] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    parallel_depth: int = 0
    boundary_done: bool = False
    target_found: bool = False
    retry_after: str | None = None
    main_task: Any = None
    gather: Any = None
    """The ``gather.GatherState`` of an async request with ``asyncio.gather``-ed steps."""
    _counts: dict[str, int] = field(default_factory=dict)
    _warned: bool = False

    def resolve_id(self, user_id: str) -> tuple[str, int]:
        """Hashed ID and repeat index: the n-th reuse of an ID (n >= 1) hashes ``"<id>:<n>"``."""
        index = self._counts.get(user_id, 0)
        self._counts[user_id] = index + 1
        return hash_step_id(f"{user_id}:{index}" if index else user_id), index

    def take(self, hashed_id: str) -> Memo | None:
        return self.memos.pop(hashed_id, None)

    def boundary_due(self) -> bool:
        """True exactly once: when memoized state is exhausted or a new step appears first."""
        if self.boundary_done:
            return False
        self.boundary_done = True
        return True

    def memos_exhausted(self) -> bool:
        return not self.memos and not self.boundary_done

    def decide(self, hashed_id: str, kind: str, user_id: str) -> Decision:
        """What to do with a step that has no memo."""
        self.found.append(user_id)
        if self.target is not None:
            if hashed_id != self.target:
                return Decision.SKIP
            self.target_found = True
            return Decision.EXECUTE if kind in RUN_KINDS else Decision.REPORT
        if self.memos and not self._warned:
            self._warned = True
            _log.warning(
                "inngest-mw: step %r is new while %d memoized step(s) were not reached; "
                "the function appears to have changed shape since earlier requests of this run",
                user_id,
                len(self.memos),
            )
        if kind in RUN_KINDS:
            if self.parallel_depth or self.disable_immediate:
                return Decision.PLAN
            return Decision.EXECUTE
        return Decision.REPORT

    def add(self, op: Op) -> None:
        self.ops.append(op)

    def interrupt_for_new_step(self) -> _Interrupt:
        """The interrupt to raise after planning/reporting a step: collected inside parallel."""
        return PlannedInterrupt() if self.parallel_depth else ResponseInterrupt()
