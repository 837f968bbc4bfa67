"""One request's memoized steps and the decision for each step call (no I/O, no colour).

It owns the memo table (keyed by hashed step ID; O(1) lookup and consume), the counter that
suffixes repeated IDs, and the decision for each step call: return the memoized value, run the
step now, plan it, report its opcode, or skip it because another step is targeted. The opcodes a
response carries are in ``wire.py``, the interrupts that end a handler early in ``interrupts.py``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

from inngest_mw.interrupts import PlannedInterrupt, ResponseInterrupt
from inngest_mw.stepkind import RUNS_IN_APP
from inngest_mw.wire import Op

__all__ = [
    "Decision",
    "Memo",
    "MemoEntry",
    "StepCore",
    "StepMemos",
    "as_memo",
    "hash_step_id",
    "parse_memos",
]

_log = logging.getLogger("inngest_mw")


@functools.lru_cache(maxsize=8192)
def hash_step_id(step_id: str) -> str:
    """Lowercase hex SHA-1 of the user-facing step ID, identical across Inngest SDKs."""
    return hashlib.sha1(step_id.encode()).hexdigest()


@dataclass(slots=True)
class Memo:
    """One memoized step outcome; middleware may replace ``data``/``error`` in ``transform_input``."""

    data: Any = None
    error: dict[str, Any] | None = None


MemoEntry: TypeAlias = "Memo | dict[str, Any]"
"""A memo table's entry: a ``Memo``, or the call body's own ``{"data": ...}`` object for a step's
result that no hook has asked for yet (made into a ``Memo`` only when one does)."""


def as_memo(entry: MemoEntry) -> Memo:
    """The ``Memo`` an entry stands for."""
    return Memo(entry["data"]) if type(entry) is dict else cast(Memo, entry)


class StepMemos(Mapping[str, Memo]):
    """The request's memoized steps by hashed ID, as handed to ``transform_input``."""

    __slots__ = ("_table",)

    def __init__(self, table: dict[str, MemoEntry]) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Memo:
        entry = self._table[key]
        if type(entry) is dict:  # asked for: from now on the table holds the Memo a hook may change
            entry = self._table[key] = Memo(entry["data"])
        return cast(Memo, entry)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    @property
    def size(self) -> int:
        return len(self._table)

    def pop(self, key: str) -> Memo | None:
        entry = self._table.pop(key, None)
        return None if entry is None else as_memo(entry)


def parse_memos(raw: object) -> dict[str, MemoEntry]:
    """Normalize the call body's ``steps``: ``{data}``, ``{error}``, ``null`` and raw events.

    ``{"input": ...}`` entries describe steps that have not finished and are not memoized results.
    A step's result (``{"data": ...}``, the usual entry) is kept as the body's own object: most
    replays only read its value, so no ``Memo`` is made for them.
    """
    if not isinstance(raw, dict):
        return {}
    table: dict[str, MemoEntry] = {}
    for key, value in raw.items():
        if type(value) is dict:
            if len(value) == 1 and "data" in value:  # the common case: a step's result
                table[key] = value
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


class Decision(enum.Enum):
    EXECUTE = "execute"
    PLAN = "plan"
    REPORT = "report"
    SKIP = "skip"


# Module-level names for the per-step path (an enum member lookup costs about 100 ns in 3.11).
_EXECUTE, _PLAN, _REPORT, _SKIP = Decision.EXECUTE, Decision.PLAN, Decision.REPORT, Decision.SKIP


@dataclass(slots=True)
class StepCore:
    """Per-request step state; faces call ``resolve_id``, ``take`` and ``decide`` for each step."""

    memos: dict[str, MemoEntry]
    target: str | None = None
    run_id: str = ""
    disable_immediate: bool = False
    ops: list[Op] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    parallel_depth: int = 0
    boundary_done: bool = False
    target_found: bool = False
    retry_after: str | None = None
    main_task: Any = None
    gather: Any = None
    """The ``gather.GatherState`` of an async request with ``asyncio.gather``-ed steps."""
    checkpoint: Any = None
    """The ``checkpoint.Checkpointer`` when this request may run steps back to back."""
    output_transformed: bool = False
    """The reported step already went through ``transform_output`` (a refused checkpoint)."""
    id_counts: dict[str, int] = field(default_factory=dict)
    """How often each user-facing step ID was called so far (its repeats hash ``"<id>:<n>"``)."""
    _warned: bool = False

    def resolve_id(self, user_id: str) -> tuple[str, int]:
        """Hashed ID and repeat index: the n-th reuse of an ID (n >= 1) hashes ``"<id>:<n>"``."""
        index = self.id_counts.get(user_id, 0)
        self.id_counts[user_id] = index + 1
        return hash_step_id(f"{user_id}:{index}" if index else user_id), index

    def take(self, hashed_id: str) -> Memo | None:
        entry = self.memos.pop(hashed_id, None)
        return None if entry is None else as_memo(entry)

    def boundary_due(self) -> bool:
        """True exactly once: when memoized state is exhausted or a new step appears first."""
        if self.boundary_done:
            return False
        self.boundary_done = True
        return True

    def decide(self, hashed_id: str, kind: str, user_id: str) -> Decision:
        """What to do with a step that has no memo."""
        self.found.append(user_id)
        if self.target is not None:
            if hashed_id != self.target:
                return _SKIP
            self.target_found = True
            return _EXECUTE if kind in RUNS_IN_APP else _REPORT
        if self.memos and not self._warned:
            self._warned = True
            _log.warning(
                "inngest-mw: step %r is new while %d memoized step(s) were not reached; "
                "the function appears to have changed shape since earlier requests of this run",
                user_id,
                len(self.memos),
            )
        if kind in RUNS_IN_APP:
            if self.parallel_depth or self.disable_immediate:
                return _PLAN
            return _EXECUTE
        return _REPORT

    def add(self, op: Op) -> None:
        self.ops.append(op)

    def interrupt_for_new_step(self) -> PlannedInterrupt | ResponseInterrupt:
        """The interrupt to raise after planning/reporting a step: collected inside parallel."""
        return PlannedInterrupt() if self.parallel_depth else ResponseInterrupt()
