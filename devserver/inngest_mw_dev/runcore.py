"""The core of the run state machine: a run's life (created, resolved, finished) and its steps.

``RunCore`` holds what every transition shares: the store, admission, history, scheduling and
the function registry, and the transitions the others build on: creating a run (cancel pauses,
concurrency keys, its first call), memoizing a step, resolving an async branch, retrying or
failing a call, finishing a run (and the ``inngest/function.*`` events that follow). The opcodes
an app reports are ``opcodes``'s; the entry points the engine calls are ``machine``'s.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from inngest_mw_dev.admission import Admission
from inngest_mw_dev.canonical import canonical_text, utf8_len
from inngest_mw_dev.executor import (
    CallFailed,
    Op,
)
from inngest_mw_dev.expr import Expression, ExpressionError, compile_expression, interpolate
from inngest_mw_dev.history import History, HistoryNote
from inngest_mw_dev.ids import new_ulid
from inngest_mw_dev.kinds import DISCOVERY, Opcode, PauseKind, QueueKind, RunStatus, StepStatus
from inngest_mw_dev.limits import (
    MAX_STATE_BYTES,
    json_bytes,
    state_error,
)
from inngest_mw_dev.registration import (
    FunctionDef,
    RegistrationError,
    event_name_matches,
)
from inngest_mw_dev.runmeta import RunMetadata
from inngest_mw_dev.scheduling import Scheduling
from inngest_mw_dev.store import PauseRow, QueueItem, RunRow, Store
from inngest_mw_dev.timing import backoff_seconds

__all__ = [
    "EV_CANCELLED",
    "EV_CRON",
    "EV_FAILED",
    "EV_FINISHED",
    "EV_INVOKED",
    "PreparedCall",
    "RunCore",
]

log = logging.getLogger("inngest_mw_dev")

# The run statuses under their former names, for callers that import them from here.
RUNNING, COMPLETED, FAILED = RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED
CANCELLED, SKIPPED = RunStatus.CANCELLED, RunStatus.SKIPPED
EV_FINISHED = "inngest/function.finished"
EV_FAILED = "inngest/function.failed"
EV_CANCELLED = "inngest/function.cancelled"
EV_INVOKED = "inngest/function.invoked"
EV_CRON = "inngest/scheduled.timer"
_YEAR = 365 * 86_400.0
_DATA_WRAPPER = len('{"data":}')
# The step kind shown for ops that report on a ``step.run`` rather than being a kind of their own.
_STEP_KIND: dict[str, str] = {
    Opcode.STEP: Opcode.STEP_RUN,
    Opcode.STEP_PLANNED: Opcode.STEP_RUN,
    Opcode.STEP_ERROR: Opcode.STEP_RUN,
    Opcode.STEP_FAILED: Opcode.STEP_RUN,
}
# Ops that report on the function as a whole rather than on a step of it.
_NOT_STEPS = frozenset({Opcode.NONE, Opcode.RUN_COMPLETE, Opcode.DISCOVERY_REQUEST})
_INVOKE_TIMEOUT_ERROR = {
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
}


@dataclass(frozen=True, slots=True)
class PreparedCall:
    app_url: str
    fn_id: str
    step_id: str
    run_id: str
    body: bytes


class RunCore:
    """State and the shared transitions of the run state machine (see the module)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        retry_base: float = 1.0,
        on_history: Callable[[HistoryNote], None] | None = None,
    ) -> None:
        self.store = store
        self.admission = Admission(store)
        self.clock = clock
        self.retry_base = retry_base
        self.history = History(store, clock, on_history)
        self.metadata = RunMetadata(store)
        self.schedule = Scheduling(store, self.admission, self.history, clock)
        self.functions: dict[str, FunctionDef] = {}
        self.function_apps: dict[str, str] = {}
        self._dispatches: dict[int, tuple[str, str]] = {}
        """Discovery calls in flight: queue item -> (the ``qi_id`` it was sent, its run). A
        checkpoint naming another ``qi_id`` comes from a superseded dispatch."""
        self._dispatch_seq = itertools.count(1)
        self._load_functions()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for several transitions (group commit of one scheduler tick)."""
        with self.history.tx():
            yield

    def _matches(self, source: str | None, variables: Mapping[str, object]) -> bool:
        if not source:
            return True
        expression = _compiled(source)
        return expression is not None and expression.matches(variables)

    def _load_functions(self) -> None:
        for fn_id, app_id, config in self.store.active_functions():
            try:
                self.functions[fn_id] = FunctionDef.from_config(config)
            except RegistrationError as exc:
                log.warning("stored function %s no longer validates: %s", fn_id, exc)
                continue
            self.function_apps[fn_id] = app_id

    def _emit(self, name: str, data: dict[str, Any], event_id: str | None = None) -> None:
        now = self.clock()
        event = {
            "id": event_id or new_ulid(),
            "name": name,
            "data": data,
            "user": {},
            "ts": int(now * 1000),
        }
        taken = self._could_take(name)
        if self.store.insert_event(event, now, to_process=taken) and taken:
            self.store.enqueue(QueueKind.EVENT, now, payload={"event_id": event["id"]})

    def _could_take(self, name: str) -> bool:
        """Whether processing an event of ``name`` could do anything: a function triggered by
        the name, or a pause (a wait, cancellation or invoke) that may be waiting for it. Most
        runs' ``inngest/function.finished`` event is taken by nothing, and then is only stored."""
        return self.store.may_hold_pauses() or any(
            trigger.event and event_name_matches(trigger.event, name)
            for fn in self.functions.values()
            for trigger in fn.triggers
        )

    def _new_run(
        self,
        fn: FunctionDef,
        events: list[dict[str, Any]],
        correlation_id: str | None,
        *,
        status: str,
        now: float,
    ) -> RunRow:
        run = RunRow(
            id=new_ulid(),
            function_id=fn.id,
            app_id=self.function_apps.get(fn.id, ""),
            event_id=str(events[0].get("id", "")),
            events=events,
            status=status,
            output=None,
            error=None,
            queued_at=now,
            started_at=None,
            ended_at=None if status == RUNNING else now,
            force_plan=False,
            pending=0,
            max_attempts=fn.max_attempts,
            correlation_id=correlation_id,
        )
        self.store.insert_run(run)
        return run

    def _create_run(
        self,
        fn: FunctionDef,
        events: list[dict[str, Any]],
        correlation_id: str | None = None,
        note: str = "",
    ) -> RunRow:
        now = self.clock()
        run = self._new_run(fn, events, correlation_id, status=RUNNING, now=now)
        detail: dict[str, Any] = {"event": events[0].get("name")}
        if note:
            detail["reason"] = note
        if len(events) > 1:
            detail["events"] = len(events)
        self.history.record(run, "queued", **detail)
        for index, rule in enumerate(fn.cancel):
            condition = rule.condition
            if condition:
                try:
                    condition = interpolate(condition, {"event": events[0]})
                except ExpressionError as exc:
                    log.warning("cancel condition of %s: %s", fn.id, exc)
            self.store.insert_pause(
                PauseRow(
                    f"{run.id}:cancel:{index}",
                    run.id,
                    None,
                    PauseKind.CANCEL,
                    rule.event,
                    condition,
                    None,
                    now + rule.timeout,
                )
            )
        self.admission.hold_keys(fn, run.id, events[0])
        plan = self.admission.plan_start(fn, events[0], now)
        if plan.reasons:
            kind = "delayed" if plan.run_at > now else "prioritized"
            self.history.record(run, kind, reason="; ".join(plan.reasons), until=plan.run_at)
        self.schedule.call(run, DISCOVERY, plan.run_at)
        if fn.flow.start_timeout is not None:
            self.schedule.run_timeout(run, "start", fn.flow.start_timeout, now)
        return run

    def _cancel(self, run: RunRow, reason: str) -> None:
        error = {"name": "FunctionCancelledError", "message": reason}
        self._finalize(run, CANCELLED, error=error, reason=reason)

    def _finalize(
        self,
        run: RunRow,
        status: str,
        *,
        output: Any = None,
        error: Any = None,
        reason: str | None = None,
    ) -> None:
        now = self.clock()
        self.store.update_run(
            run.id, status=status, output=output, error=error, ended_at=now, pending=0
        )
        run.status, run.pending = status, 0
        self.store.delete_run_work(run.id)
        detail: dict[str, Any] = {"output": output} if status == COMPLETED else {"error": error}
        if reason:
            detail["reason"] = reason
        self.history.record(run, status.lower(), **detail)
        data: dict[str, Any] = {
            "function_id": run.function_id,
            "run_id": run.id,
            "event": run.events[0] if run.events else {},
            "events": run.events,
            "_inngest": {"status": status},
        }
        if run.correlation_id:
            data["correlation_id"] = run.correlation_id
        if status == COMPLETED:
            data["result"] = output
        else:
            data["error"] = error
        self._emit(EV_FINISHED, data)
        if status == FAILED:
            self._emit(EV_FAILED, data, event_id=run.id)
        elif status == CANCELLED:
            self._emit(EV_CANCELLED, data, event_id=run.id)

    def _running(self, item: QueueItem) -> RunRow | None:
        """The item's run if it is still running; otherwise the item is dropped."""
        run = self.store.get_run(item.run_id or "")
        if run is None or run.status != RUNNING:
            self.store.delete_item(item.id)
            return None
        return run

    def _resolve_branch(
        self, run: RunRow, step_hash: str, memo: Any, status: str, *, via: str
    ) -> None:
        """Memoize an async step (sleep, wait, invoke); the last open branch triggers discovery."""
        step = self.store.get_step(run.id, step_hash)
        if (step is not None and step.memoized) or self._state_overflowed(run, json_bytes(memo)):
            return
        name = step.name if step else step_hash
        if not self.store.memoize_step(
            run.id,
            step_hash,
            memo,
            name=name,
            op=step.op if step else "",
            status=status,
            now=self.clock(),
        ):
            return
        self.history.record(run, "resumed", name, via=via, status=status)
        if self._add_pending(run, -1) == 0:
            self.schedule.discovery(run)

    def _mark_step(
        self,
        run: RunRow,
        step_hash: str,
        status: str,
        *,
        op: Op | None = None,
        attempts: int | None = None,
        error: Any = None,
        now: float | None = None,
    ) -> None:
        existing = self.store.get_step(run.id, step_hash)
        name = op.label if op else existing.name if existing else step_hash
        kind = _STEP_KIND.get(op.op, op.op) if op else existing.op if existing else Opcode.STEP_RUN
        self.store.upsert_step(
            run.id,
            step_hash,
            name=name,
            op=kind,
            status=status,
            now=self.clock() if now is None else now,
            attempts=attempts,
            error=error,
        )

    def _add_pending(self, run: RunRow, delta: int) -> int:
        """Adjust the run's count of open branches, keeping ``run`` in step with its row."""
        run.pending = self.store.add_pending(run.id, delta)
        return run.pending

    def _fail_run(self, run: RunRow, error: dict[str, Any]) -> None:
        self._finalize(run, FAILED, error=error, reason=error["message"])

    def _state_overflowed(self, run: RunRow, memo_bytes: int) -> bool:
        """Fail the run when a memo of ``memo_bytes`` takes its state (events and memos) over
        32 MiB."""
        events = utf8_len(run.events_json) if run.events_json else json_bytes(run.events)
        size = events + self.store.memo_bytes(run.id) + memo_bytes
        if size <= MAX_STATE_BYTES:
            return False
        self._fail_run(run, state_error(size))
        return True

    def _save_step(
        self,
        run: RunRow,
        op: Op,
        memo: dict[str, Any],
        status: str,
        started_at: float,
        encoded: str | None = None,
    ) -> None:
        now = self.clock()
        existing = self.store.get_step(run.id, op.id)
        if existing is not None and existing.memoized:
            return
        encoded = canonical_text(memo) if encoded is None else encoded
        if self._state_overflowed(run, utf8_len(encoded)):
            return
        began = existing.started_at if existing and existing.started_at else started_at
        saved = self.store.memoize_step(
            run.id,
            op.id,
            memo,
            name=op.label,
            op=Opcode.STEP_RUN,
            status=status,
            now=now,
            started_at=began,
            encoded=encoded,
        )
        if not saved:
            return
        kind = "step_completed" if status == StepStatus.COMPLETED else "step_failed"
        detail: dict[str, Any] = {"duration_ms": round((now - began) * 1000)}
        if "error" in memo:
            detail["error"] = memo["error"]
        self.history.record(run, kind, op.label, **detail)

    def _retry_or_fail(self, run: RunRow, item: QueueItem, failure: CallFailed) -> None:
        step = None if item.step == DISCOVERY else item.step
        if failure.retriable and item.attempt + 1 < run.max_attempts:
            now = self.clock()
            at = failure.retry_at or now + backoff_seconds(item.attempt, self.retry_base)
            self.store.reschedule(item.id, at, item.attempt + 1)
            if step:
                self._mark_step(
                    run, step, StepStatus.RETRYING, attempts=item.attempt + 1, error=failure.error
                )
            self.history.record(
                run,
                "retry_scheduled",
                self.schedule.step_name(run, step),
                reason=failure.reason,
                attempt=item.attempt + 1,
                max_attempts=run.max_attempts,
                delay_ms=round((at - now) * 1000),
            )
            return
        self.store.delete_item(item.id)
        attempts = f"{run.max_attempts} attempt{'' if run.max_attempts == 1 else 's'} failed"
        why = "not retriable" if not failure.retriable else attempts
        # The run's error is shown beside the reason: an HTTP reason need not repeat its message.
        reason = failure.reason.removesuffix(f": {failure.error.get('message')}")
        self._finalize(run, FAILED, error=failure.error, reason=f"{reason} ({why})")


@functools.lru_cache(maxsize=10_000)
def _compiled(source: str) -> Expression | None:
    """Compile once per distinct source (wait conditions are per-run, hence the bound)."""
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        log.warning("invalid expression %r: %s", source, exc)
        return None
