"""Scheduling: which queue items a run has and when they fall due, and which due work may lease.

Transitions (``machine.RunMachine``) decide *that* a run needs a call, a timer or a cron tick;
this module decides the item: at most one queued discovery call per run, deadlines for timeouts,
the next (jittered) cron tick, and leasing under the concurrency limits, noted in history once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from inngest_mw_dev.admission import Admission
from inngest_mw_dev.cron import parse_cron
from inngest_mw_dev.history import History
from inngest_mw_dev.kinds import DISCOVERY, QueueKind, RunStatus
from inngest_mw_dev.registration import FunctionDef
from inngest_mw_dev.store import QueueItem, RunRow, Store

__all__ = ["Scheduling", "jittered"]


def jittered(tick: float, jitter: float) -> float:
    """When a cron tick fires: ``tick`` delayed by a random [0, ``jitter``] seconds."""
    return tick + random.uniform(0, jitter) if jitter else tick


class Scheduling:
    """Queue items for runs and functions; the caller owns the transaction."""

    def __init__(
        self, store: Store, admission: Admission, history: History, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.admission = admission
        self.history = history
        self.clock = clock
        self._reusable: QueueItem | None = None

    # calls

    @contextmanager
    def reusing(self, run: RunRow, item: QueueItem) -> Iterator[None]:
        """While a discovery call's outcome applies, its item may become the next discovery
        call, which saves deleting it, looking for another one and inserting a new row; if it
        is not reused, it is deleted afterwards (unless the run has ended and taken it along)."""
        self._reusable = item
        try:
            yield
        finally:
            unused, self._reusable = self._reusable, None
        if unused is not None and run.status == RunStatus.RUNNING:
            self.store.delete_item(unused.id)

    def discovery(self, run: RunRow) -> None:
        """Queue the next discovery call; at most one is ever queued (fan-in coalescing)."""
        if run.force_plan:
            self.store.update_run(run.id, force_plan=False)
            run.force_plan = False
        reuse = self._reusable
        if reuse is not None and reuse.run_id == run.id:
            self._reusable = None
            self.store.requeue(reuse.id, self.clock())
        elif not self.store.has_item(run.id, QueueKind.CALL, DISCOVERY):
            self.call(run, DISCOVERY, self.clock())

    def call(self, run: RunRow, step: str, at: float, attempt: int = 0) -> None:
        """Queue a call for ``step`` (or discovery) of ``run`` due at ``at``."""
        self.store.enqueue(
            QueueKind.CALL,
            at,
            run_id=run.id,
            function_id=run.function_id,
            step=step,
            attempt=attempt,
        )

    # timers

    def step_timer(
        self, kind: QueueKind, run: RunRow, step: str, at: float, **payload: object
    ) -> None:
        """A sleep's end or a wait's or invoke's timeout for ``step``."""
        self.store.enqueue(
            kind, at, run_id=run.id, function_id=run.function_id, step=step, payload=payload
        )

    def run_timeout(self, run: RunRow, which: str, seconds: float, now: float) -> None:
        """The ``timeouts.start`` or ``timeouts.finish`` deadline of a run."""
        self.store.enqueue(
            QueueKind.RUN_TIMEOUT,
            now + seconds,
            run_id=run.id,
            function_id=run.function_id,
            payload={"which": which, "seconds": seconds},
        )

    # cron

    def sync_crons(self, fn: FunctionDef, now: float) -> None:
        """Keep one queued tick per cron trigger; unchanged schedules keep their next fire time."""
        jitters = {t.cron: t.jitter for t in fn.triggers if t.cron}
        wanted = set(jitters)
        have: set[str] = set()
        for item in self.store.cron_items(fn.id):
            cron = item.payload.get("cron")
            if cron in wanted and cron not in have:
                have.add(cron)
            else:
                self.store.delete_item(item.id)
        for cron in sorted(wanted - have):
            tick = parse_cron(cron).next_after(now)
            self.store.enqueue(
                QueueKind.CRON,
                jittered(tick, jitters[cron]),
                function_id=fn.id,
                payload={"cron": cron, "tick": tick},
            )

    def next_cron(self, item: QueueItem, fn: FunctionDef, cron: str, now: float) -> None:
        """Move a fired cron tick's item to the schedule's next tick."""
        jitter = max(t.jitter for t in fn.triggers if t.cron == cron)
        # Continue from the tick just fired (its time before jitter), unless it is older than
        # its jitter explains (the engine was down): then skip missed ticks, as without jitter.
        fired = item.payload.get("tick")
        after = fired if isinstance(fired, int | float) and now - fired <= jitter else now
        tick = parse_cron(cron).next_after(after)
        self.store.reschedule(item.id, jittered(tick, jitter), 0, tick=tick)

    # leasing

    def lease(self, now: float, lease_seconds: float, limit: int) -> list[QueueItem]:
        """Lease due work; calls over a concurrency limit wait, noted once in their run's history."""
        admit = self.admission.admitter(now)
        held: list[tuple[QueueItem, str]] = []

        def gate(item: QueueItem) -> bool:
            full = admit(item)
            if full is not None:
                held.append((item, full))
            return full is None

        with self.history.tx():
            items = self.store.lease_due(now, lease_seconds, limit, gate)
            for item, full in held:
                run = self.store.get_run(item.run_id or "")
                if item.payload.get("held") or run is None:
                    continue
                self.store.set_payload(item.id, held=True)
                step = None if item.step == DISCOVERY else self.step_name(run, item.step)
                self.history.record(run, "concurrency_limited", step, reason=f"concurrency: {full}")
        return items

    def step_name(self, run: RunRow, step_hash: str | None) -> str | None:
        """The user-facing name of a run's step (its hash when it is not recorded yet)."""
        if step_hash is None:
            return None
        step = self.store.get_step(run.id, step_hash)
        return step.name if step else step_hash
