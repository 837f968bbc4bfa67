"""Run history: entries written inside a transition's transaction, published once it commits.

Listeners (the CLI's live log) never see an entry whose transaction rolled back, and a listener
that fails cannot undo a transition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from inngest_mw_dev.store import RunRow, Store

__all__ = ["History", "HistoryNote"]

log = logging.getLogger("inngest_mw_dev")
_JOINED = nullcontext()
"""A nested ``tx``: the transaction already open is joined, at no more cost than a ``with``."""


@dataclass(frozen=True, slots=True)
class HistoryNote:
    """A history entry as published to listeners (the CLI) after its transaction commits."""

    run_id: str
    function_id: str
    ts: float
    kind: str
    step: str | None
    detail: dict[str, Any]


class History:
    """Writes history rows and owns the transaction they are published after."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        on_history: Callable[[HistoryNote], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_history = on_history
        self._notes: list[HistoryNote] = []
        self._in_tx = False

    def tx(self) -> AbstractContextManager[None]:
        """One store transaction (nested uses join it); notes are published after it commits."""
        return _JOINED if self._in_tx else self._outer_tx()

    @contextmanager
    def _outer_tx(self) -> Iterator[None]:
        self._in_tx = True
        try:
            with self.store.tx():
                yield
        except BaseException:
            self._notes.clear()
            raise
        finally:
            self._in_tx = False
        notes, self._notes = self._notes, []
        if self.on_history is not None:
            for note in notes:
                try:
                    self.on_history(note)
                except Exception:
                    log.exception("history listener failed")

    def record(self, run: RunRow, kind: str, step: str | None = None, **detail: Any) -> None:
        """Add an entry to ``run``'s history (inside the current transaction)."""
        ts = self.clock()
        self.store.add_history(run.id, ts, kind, step, detail)
        self._notes.append(HistoryNote(run.id, run.function_id, ts, kind, step, detail))
