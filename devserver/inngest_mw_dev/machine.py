"""The run state machine: every durable transition of apps, events, runs, steps and pauses.

No I/O here besides SQLite. Each public method is one transaction, so a step's output and the
queue items that follow from it commit together. The engine does the HTTP calls and scheduling;
flow-control decisions come from ``admission`` and are recorded here in each run's history.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from inngest_mw_dev.admission import SINGLETON, Admission, Flush
from inngest_mw_dev.canonical import canonical_text, utf8_len
from inngest_mw_dev.cron import parse_cron
from inngest_mw_dev.executor import (
    CallFailed,
    CallOutcome,
    Completed,
    Op,
    OpsResponse,
    first_event_json,
    splice_body,
)
from inngest_mw_dev.expr import Expression, ExpressionError, compile_expression, interpolate
from inngest_mw_dev.ids import deterministic_uuid, new_ulid
from inngest_mw_dev.limits import (
    MAX_OPS,
    MAX_STATE_BYTES,
    MAX_STEPS,
    json_bytes,
    overflow_error,
    state_error,
    step_limit_error,
    step_output_error,
)
from inngest_mw_dev.registration import (
    FunctionDef,
    Registration,
    RegistrationError,
    event_name_matches,
)
from inngest_mw_dev.store import AppRow, PauseRow, QueueItem, RunRow, Store
from inngest_mw_dev.timing import backoff_seconds, parse_seconds, sleep_until

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "RUNNING",
    "SKIPPED",
    "HistoryNote",
    "PreparedCall",
    "RunMachine",
]

log = logging.getLogger("inngest_mw_dev")

RUNNING, COMPLETED, FAILED, CANCELLED = "Running", "Completed", "Failed", "Cancelled"
SKIPPED = "Skipped"
DISCOVERY = "step"
EV_FINISHED = "inngest/function.finished"
EV_FAILED = "inngest/function.failed"
EV_CANCELLED = "inngest/function.cancelled"
EV_INVOKED = "inngest/function.invoked"
EV_CRON = "inngest/scheduled.timer"
_YEAR = 365 * 86_400.0
_DATA_WRAPPER = len('{"data":}')
# The step kind shown for ops that report on a ``step.run`` rather than being a kind of their own.
_STEP_KIND = {"Step": "StepRun", "StepPlanned": "StepRun", "StepError": "StepRun",
              "StepFailed": "StepRun"}  # fmt: skip
# Ops that report on the function as a whole rather than on a step of it.
_NOT_STEPS = frozenset({"None", "RunComplete", "DiscoveryRequest"})
_INVOKE_TIMEOUT_ERROR = {
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
}


@dataclass(frozen=True, slots=True)
class HistoryNote:
    """A history entry as published to listeners (the CLI) after its transaction commits."""

    run_id: str
    function_id: str
    ts: float
    kind: str
    step: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PreparedCall:
    app_url: str
    fn_id: str
    step_id: str
    run_id: str
    body: bytes


class RunMachine:
    """Owns the function registry and applies every state transition inside one transaction."""

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
        self.on_history = on_history
        self.functions: dict[str, FunctionDef] = {}
        self.function_apps: dict[str, str] = {}
        self._notes: list[HistoryNote] = []
        self._reusable: QueueItem | None = None
        self._in_tx = False
        self._load_functions()

    # transactions and history

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One store transaction; history notes are published only after it commits."""
        if self._in_tx:
            yield
            return
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

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for several transitions (group commit of one scheduler tick)."""
        with self._tx():
            yield

    def _history(self, run: RunRow, kind: str, step: str | None = None, **detail: Any) -> None:
        row = self.store.add_history(run.id, self.clock(), kind, step, detail)
        self._notes.append(HistoryNote(run.id, run.function_id, row.ts, kind, step, detail))

    def _matches(self, source: str | None, variables: Mapping[str, object]) -> bool:
        if not source:
            return True
        expression = _compiled(source)
        return expression is not None and expression.matches(variables)

    # registry

    def _load_functions(self) -> None:
        for fn_id, app_id, config in self.store.active_functions():
            try:
                self.functions[fn_id] = FunctionDef.from_config(config)
            except RegistrationError as exc:
                log.warning("stored function %s no longer validates: %s", fn_id, exc)
                continue
            self.function_apps[fn_id] = app_id

    def register(self, reg: Registration) -> dict[str, Any]:
        """Store an app's functions (archiving dropped ones); the ``/fn/register`` reply."""
        app_id = deterministic_uuid(reg.app_name)
        existing = self.store.get_app(app_id)
        if existing and existing.checksum == reg.checksum and existing.url == reg.url:
            return {"ok": True, "modified": False, "app_id": app_id, "sync_id": existing.sync_id}
        now = self.clock()
        sync_id = new_ulid()
        with self._tx():
            self.store.upsert_app(
                AppRow(app_id, reg.app_name, reg.url, reg.sdk, reg.framework, reg.checksum,
                       sync_id, now)
            )  # fmt: skip
            for fn in reg.functions:
                self.store.upsert_function(fn.id, app_id, fn.name, fn.config, now)
                self.functions[fn.id] = fn
                self.function_apps[fn.id] = app_id
                self._sync_crons(fn, now)
            for gone in self.store.archive_functions(app_id, [f.id for f in reg.functions], now):
                self.functions.pop(gone, None)
                self.function_apps.pop(gone, None)
                for item in self.store.cron_items(gone):
                    self.store.delete_item(item.id)
        return {"ok": True, "modified": True, "app_id": app_id, "sync_id": sync_id}

    def _sync_crons(self, fn: FunctionDef, now: float) -> None:
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
            self.store.enqueue("cron", _jittered(tick, jitters[cron]), function_id=fn.id,
                               payload={"cron": cron, "tick": tick})  # fmt: skip

    # events

    def ingest(self, events: list[dict[str, Any]]) -> None:
        """Store accepted events (new IDs only) and queue their processing, atomically."""
        now = self.clock()
        with self._tx():
            for event in events:
                if self.store.insert_event(event, now):
                    self.store.enqueue("event", now, payload={"event_id": event["id"]})

    def _emit(self, name: str, data: dict[str, Any], event_id: str | None = None) -> None:
        now = self.clock()
        event = {"id": event_id or new_ulid(), "name": name, "data": data, "user": {},
                 "ts": int(now * 1000)}  # fmt: skip
        if self.store.insert_event(event, now):
            self.store.enqueue("event", now, payload={"event_id": event["id"]})

    def process_event(self, item: QueueItem) -> None:
        """Apply one stored event: cancellations, resumed waits and invokes, then new runs."""
        with self._tx():
            self.store.delete_item(item.id)
            event = self.store.get_event(str(item.payload.get("event_id")))
            if event is None:
                return
            name = str(event.get("name", ""))
            now = self.clock()
            for pause in self.store.pauses_for_event(name, now):
                if pause.kind not in ("cancel", "wait"):
                    continue
                run = self.store.get_run(pause.run_id)
                if run is None or run.status != RUNNING:
                    self.store.delete_pause(pause.id)
                    continue
                trigger = run.events[0] if run.events else {}
                if not self._matches(pause.expression, {"event": trigger, "async": event}):
                    continue
                if not self.store.delete_pause(pause.id):
                    continue
                if pause.kind == "cancel":
                    self._cancel(run, f"cancelled by event {name} ({event.get('id')})")
                elif pause.step is not None:
                    self.store.delete_pause_items(run.id, pause.step)
                    self._resolve_branch(run, pause.step, event, "Completed", via=name)
            if name == EV_FINISHED:
                self._resume_invokers(event)
            for fn in list(self.functions.values()):
                if self._triggered(fn, event):
                    self._schedule(fn, event)

    def triggered_by(self, event: dict[str, Any]) -> list[str]:
        """IDs of the functions whose triggers match ``event`` (for "matched no function")."""
        return [fn.id for fn in self.functions.values() if self._triggered(fn, event)]

    def _triggered(self, fn: FunctionDef, event: dict[str, Any]) -> bool:
        name = str(event.get("name", ""))
        return any(
            trigger.event
            and event_name_matches(trigger.event, name)
            and self._matches(trigger.expression, {"event": event})
            for trigger in fn.triggers
        )

    def _resume_invokers(self, event: dict[str, Any]) -> None:
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("correlation_id"), str):
            return
        for pause in self.store.pauses_for_correlation(data["correlation_id"]):
            if pause.kind != "invoke" or pause.step is None:
                continue
            if not self.store.delete_pause(pause.id):
                continue
            run = self.store.get_run(pause.run_id)
            if run is None or run.status != RUNNING:
                continue
            self.store.delete_pause_items(run.id, pause.step)
            if "error" in data and data["error"] is not None:
                memo: dict[str, Any] = {"error": data["error"]}
                status = "Failed"
            else:
                memo, status = {"data": data.get("result")}, "Completed"
            self._resolve_branch(run, pause.step, memo, status, via=EV_FINISHED)

    # flow control before a run exists

    def _schedule(self, fn: FunctionDef, event: dict[str, Any]) -> None:
        """Start a run for a triggering event, or hold the event for debounce or a batch."""
        now = self.clock()
        if fn.flow.batch is not None:
            flush = self.admission.batch(fn.id, fn.flow.batch, event, now)
            if flush is not None:
                self._flush(flush)
        elif fn.flow.debounce is not None:
            self.admission.debounce(fn.id, fn.flow.debounce, event, now)
        else:
            self._start_run(fn, [event])

    def _flush(self, flush: Flush) -> None:
        fn = self.functions.get(flush.function_id)
        events = [e for e in map(self.store.get_event, flush.event_ids) if e is not None]
        if fn is not None and events:
            self._start_run(fn, events, note=flush.reason)

    def flush_buffer(self, item: QueueItem) -> None:
        """A debounce or batch timer is due: start the run its held events make."""
        with self._tx():
            flush = self.admission.take(item, self.clock())
            if flush is not None:
                self._flush(flush)

    def _start_run(self, fn: FunctionDef, events: list[dict[str, Any]], note: str = "") -> None:
        """Apply rate limit, idempotency and singleton, then create the run (or a skipped one).

        Invoked runs bypass this (and buffering), so a parent never waits on a skipped child;
        throttle, priority, concurrency and timeouts still apply to them via ``_create_run``.
        """
        now = self.clock()
        reason = self.admission.skip_reason(fn, events[0], now)
        if reason is not None:
            run = self._new_run(fn, events, None, status=SKIPPED, now=now)
            self._history(run, "skipped", event=events[0].get("name"), reason=reason)
            return
        singleton = fn.flow.singleton
        if singleton is not None and singleton.mode == "cancel":
            key = self.admission.singleton_key(fn, events[0])
            for run_id in self.store.runs_with_key(SINGLETON, key):
                running = self.store.get_run(run_id)
                if running is not None and running.status == RUNNING:
                    self._cancel(running, "singleton: replaced by a newer run with the same key")
        self._create_run(fn, events, note=note)

    # run lifecycle

    def _new_run(
        self, fn: FunctionDef, events: list[dict[str, Any]], correlation_id: str | None, *,
        status: str, now: float,
    ) -> RunRow:  # fmt: skip
        run = RunRow(
            id=new_ulid(), function_id=fn.id, app_id=self.function_apps.get(fn.id, ""),
            event_id=str(events[0].get("id", "")), events=events, status=status, output=None,
            error=None, queued_at=now, started_at=None,
            ended_at=None if status == RUNNING else now, force_plan=False, pending=0,
            max_attempts=fn.max_attempts, correlation_id=correlation_id,
        )  # fmt: skip
        self.store.insert_run(run)
        return run

    def _create_run(
        self, fn: FunctionDef, events: list[dict[str, Any]], correlation_id: str | None = None,
        note: str = "",
    ) -> RunRow:  # fmt: skip
        now = self.clock()
        run = self._new_run(fn, events, correlation_id, status=RUNNING, now=now)
        detail: dict[str, Any] = {"event": events[0].get("name")}
        if note:
            detail["reason"] = note
        if len(events) > 1:
            detail["events"] = len(events)
        self._history(run, "queued", **detail)
        for index, rule in enumerate(fn.cancel):
            condition = rule.condition
            if condition:
                try:
                    condition = interpolate(condition, {"event": events[0]})
                except ExpressionError as exc:
                    log.warning("cancel condition of %s: %s", fn.id, exc)
            self.store.insert_pause(
                PauseRow(f"{run.id}:cancel:{index}", run.id, None, "cancel", rule.event,
                         condition, None, now + rule.timeout)
            )  # fmt: skip
        self.admission.hold_keys(fn, run.id, events[0])
        plan = self.admission.plan_start(fn, events[0], now)
        if plan.reasons:
            kind = "delayed" if plan.run_at > now else "prioritized"
            self._history(run, kind, reason="; ".join(plan.reasons), until=plan.run_at)
        self.store.enqueue("call", plan.run_at, run_id=run.id, function_id=fn.id, step=DISCOVERY)
        if fn.flow.start_timeout is not None:
            self._enqueue_run_timeout(run, "start", fn.flow.start_timeout, now)
        return run

    def create_run(
        self, fn_id: str, events: list[dict[str, Any]], *, note: str = "",
        prepare: Callable[[RunRow], None] | None = None,
    ) -> RunRow | None:  # fmt: skip
        """Start a run of ``fn_id`` now, past debounce, batching, rate limit and idempotency.

        For run control (invoke from the UI or CLI, rerun). ``prepare`` runs in the same
        transaction, before the run's first call can be leased (e.g. to seed memoized steps).
        None when the function is not registered.
        """
        with self._tx():
            fn = self.functions.get(fn_id)
            if fn is None:
                return None
            run = self._create_run(fn, events, note=note)
            if prepare is not None:
                prepare(run)
            return run

    def _enqueue_run_timeout(self, run: RunRow, which: str, seconds: float, now: float) -> None:
        self.store.enqueue("run_timeout", now + seconds, run_id=run.id,
                           function_id=run.function_id,
                           payload={"which": which, "seconds": seconds})  # fmt: skip

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a running run; False when it is unknown or already ended."""
        with self._tx():
            run = self.store.get_run(run_id)
            if run is None or run.status != RUNNING:
                return False
            self._cancel(run, reason)
            return True

    def _cancel(self, run: RunRow, reason: str) -> None:
        error = {"name": "FunctionCancelledError", "message": reason}
        self._finalize(run, CANCELLED, error=error, reason=reason)

    def _finalize(
        self, run: RunRow, status: str, *, output: Any = None, error: Any = None,
        reason: str | None = None,
    ) -> None:  # fmt: skip
        now = self.clock()
        self.store.update_run(run.id, status=status, output=output, error=error, ended_at=now,
                              pending=0)  # fmt: skip
        run.status = status
        self.store.delete_run_work(run.id)
        detail: dict[str, Any] = {"output": output} if status == COMPLETED else {"error": error}
        if reason:
            detail["reason"] = reason
        self._history(run, status.lower(), **detail)
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

    def _enqueue_discovery(self, run: RunRow) -> None:
        """Queue the next discovery call; at most one is ever queued (fan-in coalescing)."""
        if run.force_plan:
            self.store.update_run(run.id, force_plan=False)
            run.force_plan = False
        reuse = self._reusable
        if reuse is not None and reuse.run_id == run.id:
            self._reusable = None
            self.store.requeue(reuse.id, self.clock())
        elif not self.store.has_item(run.id, "call", DISCOVERY):
            self.store.enqueue("call", self.clock(), run_id=run.id, function_id=run.function_id,
                               step=DISCOVERY)  # fmt: skip

    def _resolve_branch(
        self, run: RunRow, step_hash: str, memo: Any, status: str, *, via: str
    ) -> None:
        """Memoize an async step (sleep, wait, invoke); the last open branch triggers discovery."""
        step = self.store.get_step(run.id, step_hash)
        if (step is not None and step.memoized) or self._state_overflowed(run, json_bytes(memo)):
            return
        name = step.name if step else step_hash
        if not self.store.memoize_step(run.id, step_hash, memo, name=name,
                                       op=step.op if step else "", status=status,
                                       now=self.clock()):  # fmt: skip
            return
        self._history(run, "resumed", name, via=via, status=status)
        if self.store.add_pending(run.id, -1) == 0:
            self._enqueue_discovery(run)

    # calls

    def prepare_call(self, item: QueueItem) -> PreparedCall | None:
        """Build the call request for a ``call`` item, or None when there is nothing to call."""
        with self._tx():
            run = self._running(item)
            if run is None:
                return None
            fn = self.functions.get(run.function_id)
            app = self.store.get_app(self.function_apps.get(run.function_id, ""))
            if fn is None or app is None:
                self.store.delete_item(item.id)
                reason = f"function {run.function_id} is no longer registered"
                self._finalize(run, FAILED, error={"name": "Error", "message": reason})
                return None
            now = self.clock()
            if run.started_at is None:
                self.store.update_run(run.id, started_at=now)
                self._history(run, "started")
                if fn.flow.finish_timeout is not None:
                    self._enqueue_run_timeout(run, "finish", fn.flow.finish_timeout, now)
            step_id = item.step or DISCOVERY
            if step_id != DISCOVERY:
                existing = self.store.get_step(run.id, step_id)
                self.store.upsert_step(run.id, step_id, name=existing.name if existing else step_id,
                                       op=existing.op if existing else "StepRun",
                                       status="Running", now=now,
                                       attempts=item.attempt + 1)  # fmt: skip
            body = splice_body(
                events_json=run.events_json,
                first_event_json=first_event_json(run.events_json, run.events),
                steps_json=self.store.memo_texts(run.id),
                fn_uuid=deterministic_uuid(run.function_id),
                run_id=run.id,
                step_id=step_id,
                attempt=item.attempt,
                max_attempts=run.max_attempts,
                disable_immediate_execution=run.force_plan,
            )
            return PreparedCall(app.url, run.function_id, step_id, run.id, body)

    def apply_outcome(self, item: QueueItem, outcome: CallOutcome, started_at: float) -> None:
        """Commit what one call produced: completion, a retry, or the ops it reported."""
        with self._tx():
            run = self._running(item)
            if run is None:
                return
            if isinstance(outcome, Completed):
                self.store.delete_item(item.id)
                self._finalize(run, COMPLETED, output=outcome.output)
            elif isinstance(outcome, CallFailed):
                self._retry_or_fail(run, item, outcome)
            elif not outcome.ops and item.step == DISCOVERY and run.pending == 0:
                # Nothing would ever call the function again: treat it as a failed attempt.
                self._retry_or_fail(run, item, CallFailed(
                    {"name": "InvalidResponseError", "message": "app reported no ops"},
                    True, None, "empty op list"))  # fmt: skip
            else:
                self._apply_ops(run, item, outcome, started_at)

    def _retry_or_fail(self, run: RunRow, item: QueueItem, failure: CallFailed) -> None:
        step = None if item.step == DISCOVERY else item.step
        if failure.retriable and item.attempt + 1 < run.max_attempts:
            now = self.clock()
            at = failure.retry_at or now + backoff_seconds(item.attempt, self.retry_base)
            self.store.reschedule(item.id, at, item.attempt + 1)
            if step:
                self._mark_step(run, step, "Retrying", attempts=item.attempt + 1,
                                error=failure.error)  # fmt: skip
            self._history(run, "retry_scheduled", self._step_name(run, step),
                          reason=failure.reason, attempt=item.attempt + 1,
                          delay_ms=round((at - now) * 1000))  # fmt: skip
            return
        self.store.delete_item(item.id)
        why = "not retriable" if not failure.retriable else f"{run.max_attempts} attempts failed"
        self._finalize(run, FAILED, error=failure.error, reason=f"{failure.reason} ({why})")

    def _step_name(self, run: RunRow, step_hash: str | None) -> str | None:
        if step_hash is None:
            return None
        step = self.store.get_step(run.id, step_hash)
        return step.name if step else step_hash

    def _mark_step(
        self, run: RunRow, step_hash: str, status: str, *, op: Op | None = None,
        attempts: int | None = None, error: Any = None,
    ) -> None:  # fmt: skip
        existing = self.store.get_step(run.id, step_hash)
        name = op.label if op else existing.name if existing else step_hash
        kind = _STEP_KIND.get(op.op, op.op) if op else existing.op if existing else "StepRun"
        self.store.upsert_step(run.id, step_hash, name=name, op=kind, status=status,
                               now=self.clock(), attempts=attempts, error=error)  # fmt: skip

    def _apply_ops(
        self, run: RunRow, item: QueueItem, response: OpsResponse, started_at: float
    ) -> None:
        if item.step != DISCOVERY:
            self.store.delete_item(item.id)
            self._apply_ops_of(run, item, response, started_at)
            return
        # The discovery item stays while its ops apply: it becomes the next discovery call if one
        # is needed, which saves deleting it, looking for another one and inserting a new row.
        self._reusable = item
        try:
            self._apply_ops_of(run, item, response, started_at)
        finally:
            unused, self._reusable = self._reusable, None
        if unused is not None and run.status == RUNNING:
            self.store.delete_item(unused.id)  # an ended run's items are gone already

    def _apply_ops_of(
        self, run: RunRow, item: QueueItem, response: OpsResponse, started_at: float
    ) -> None:
        ops = response.ops
        if len(ops) > MAX_OPS:
            self._fail_run(run, overflow_error(len(ops)))
            return
        steps = self._steps_with(run, ops)
        if steps > MAX_STEPS:
            self._fail_run(run, step_limit_error(steps))
            return
        targeted = item.step != DISCOVERY
        if targeted:
            self.store.add_pending(run.id, -1)
        if len([op for op in ops if op.op != "None"]) > 1:
            self.store.update_run(run.id, force_plan=True)
            run.force_plan = True
        progressed = targeted
        for op in ops:
            if run.status != RUNNING:
                return
            if op.op != "None" and op.op not in ("RunComplete", "DiscoveryRequest") and not op.id:
                self._finalize(run, FAILED, error={"name": "Error",
                               "message": f"{op.op} op without an id"})  # fmt: skip
                return
            progressed = self._apply_op(run, item, op, response, started_at) or progressed
        if run.status == RUNNING and progressed and self.store.pending(run.id) == 0:
            self._enqueue_discovery(run)

    def _steps_with(self, run: RunRow, ops: list[Op]) -> int:
        """The run's distinct steps once ``ops`` are recorded; 0 when they add none (no count)."""
        ids = {op.id for op in ops if op.op not in _NOT_STEPS}
        if not ids:
            return 0
        known = self.store.step_hashes(run.id)
        new = ids - known
        return len(known) + len(new) if new else 0

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

    def _apply_op(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        """Handle one opcode; True when a step finished (so discovery may continue)."""
        now = self.clock()
        if op.op in ("StepRun", "Step"):
            memo = {"data": op.data}
            encoded = canonical_text(memo)  # once: sized here, stored as it is, spliced in calls
            # Checked here too because not every SDK refuses an oversized output itself.
            too_large = step_output_error(op.label, op.data, utf8_len(encoded) - _DATA_WRAPPER)
            if too_large is None:
                self._save_step(run, op, memo, "Completed", started_at, encoded)
            else:
                self._save_step(run, op, {"error": too_large}, "Failed", started_at)
            return True
        if op.op == "StepError":
            error = op.error if isinstance(op.error, dict) else _missing_error(op)
            if response.no_retry or item.attempt + 1 >= run.max_attempts:
                self._save_step(run, op, {"error": error}, "Failed", started_at)
                return True
            at = response.retry_at or now + backoff_seconds(item.attempt, self.retry_base)
            self.store.enqueue("call", at, run_id=run.id, function_id=run.function_id,
                               step=op.id, attempt=item.attempt + 1)  # fmt: skip
            self.store.add_pending(run.id, 1)
            self._mark_step(run, op.id, "Retrying", op=op, attempts=item.attempt + 1, error=error)
            self._history(run, "retry_scheduled", op.label, attempt=item.attempt + 1,
                          reason=f"{error.get('name', 'Error')}: {error.get('message', '')}",
                          delay_ms=round((at - now) * 1000))  # fmt: skip
            return False
        if op.op == "StepFailed":
            error = op.error if isinstance(op.error, dict) else _missing_error(op)
            self._save_step(run, op, {"error": error}, "Failed", started_at)
            return True
        if op.op == "StepPlanned":
            self.store.enqueue("call", now, run_id=run.id, function_id=run.function_id,
                               step=op.id)  # fmt: skip
            self.store.add_pending(run.id, 1)
            self._mark_step(run, op.id, "Planned", op=op)
            return False
        if op.op == "Sleep":
            self._start_sleep(run, op)
            return False
        if op.op == "WaitForEvent":
            self._start_wait(run, op)
            return False
        if op.op == "InvokeFunction":
            self._start_invoke(run, op)
            return False
        if op.op == "RunComplete":
            self._finalize(run, COMPLETED, output=op.data)
            return False
        if op.op == "DiscoveryRequest":
            return True
        if op.op == "None":
            return False
        self._finalize(run, FAILED, error={"name": "Error", "message": f"unknown opcode {op.op!r}"},
                       reason=f"app sent unsupported opcode {op.op!r}")  # fmt: skip
        return False

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
            op="StepRun",
            status=status,
            now=now,
            started_at=began,
            encoded=encoded,
        )
        if not saved:
            return
        kind = "step_completed" if status == "Completed" else "step_failed"
        detail: dict[str, Any] = {"duration_ms": round((now - began) * 1000)}
        if "error" in memo:
            detail["error"] = memo["error"]
        self._history(run, kind, op.label, **detail)

    def _fail_op(self, run: RunRow, op: Op, message: str) -> None:
        self._finalize(run, FAILED, error={"name": "Error", "message": message},
                       reason=f"step {op.label!r}: {message}")  # fmt: skip

    def _start_sleep(self, run: RunRow, op: Op) -> None:
        now = self.clock()
        try:
            until = sleep_until(op.opts.get("duration"), op.name, now)
        except ValueError as exc:
            self._fail_op(run, op, str(exc))
            return
        self.store.enqueue("sleep", until, run_id=run.id, function_id=run.function_id,
                           step=op.id)  # fmt: skip
        self.store.add_pending(run.id, 1)
        self._mark_step(run, op.id, "Sleeping", op=op)
        self._history(run, "sleeping", op.label, until=until, seconds=round(until - now, 3))

    def _timeout(self, run: RunRow, op: Op, value: object, *, required: bool) -> float | None:
        if value is None or value == "":
            if required:
                self._fail_op(run, op, "timeout is required")
            return None
        try:
            return parse_seconds(str(value))
        except ValueError as exc:
            self._fail_op(run, op, f"invalid timeout: {exc}")
            return None

    def _start_wait(self, run: RunRow, op: Op) -> None:
        event_name = op.opts.get("event") or op.name
        if not isinstance(event_name, str) or not event_name:
            self._fail_op(run, op, "waitForEvent needs an event name")
            return
        timeout = self._timeout(run, op, op.opts.get("timeout"), required=True)
        if timeout is None:
            return
        condition = op.opts.get("if")
        expression: str | None = None
        if isinstance(condition, str) and condition:
            try:
                expression = interpolate(condition, {"event": run.events[0]})
                compile_expression(expression, restrictive=True)
            except ExpressionError as exc:
                self._fail_op(run, op, f"invalid 'if' expression: {exc}")
                return
        now = self.clock()
        pause_id = f"{run.id}:{op.id}"
        self.store.insert_pause(PauseRow(pause_id, run.id, op.id, "wait", event_name, expression,
                                         None, now + timeout))  # fmt: skip
        self.store.enqueue("wait_timeout", now + timeout, run_id=run.id,
                           function_id=run.function_id, step=op.id,
                           payload={"pause_id": pause_id})  # fmt: skip
        self.store.add_pending(run.id, 1)
        self._mark_step(run, op.id, "Waiting", op=op)
        self._history(run, "waiting", op.label, event=event_name, expression=expression,
                      timeout_s=timeout)  # fmt: skip

    def _start_invoke(self, run: RunRow, op: Op) -> None:
        target_id = op.opts.get("function_id")
        payload = op.opts.get("payload") or {}
        if not isinstance(target_id, str) or not isinstance(payload, dict):
            self._fail_op(run, op, "invoke needs opts.function_id and an object payload")
            return
        timeout = self._timeout(run, op, op.opts.get("timeout"), required=False)
        if run.status != RUNNING:
            return
        now = self.clock()
        self.store.add_pending(run.id, 1)
        self._mark_step(run, op.id, "Invoking", op=op)
        target = self.functions.get(target_id)
        if target is None:
            error = {"name": "Error", "message": f"could not invoke {target_id}: no such function"}
            self._resolve_branch(run, op.id, {"error": error}, "Failed", via="invoke")
            return
        correlation = f"{run.id}.{op.id}"
        expires = now + (timeout if timeout is not None else _YEAR)
        pause_id = f"{run.id}:{op.id}"
        self.store.insert_pause(PauseRow(
            pause_id, run.id, op.id, "invoke", EV_FINISHED,
            f'async.data.correlation_id == "{correlation}"', correlation, expires,
        ))  # fmt: skip
        self.store.enqueue("invoke_timeout", expires, run_id=run.id, function_id=run.function_id,
                           step=op.id, payload={"pause_id": pause_id})  # fmt: skip
        data = payload.get("data")
        user = payload.get("user")
        event: dict[str, Any] = {
            "id": new_ulid(), "name": EV_INVOKED, "ts": int(now * 1000),
            "data": {**(data if isinstance(data, dict) else {}), "_inngest": {
                "fn_id": target_id, "correlation_id": correlation,
                "source_app_id": run.app_id, "source_fn_id": run.function_id,
            }},
            "user": user if isinstance(user, dict) else {},
        }  # fmt: skip
        if isinstance(payload.get("v"), str):
            event["v"] = payload["v"]
        self.store.insert_event(event, now)
        child = self._create_run(target, [event], correlation_id=correlation)
        self._history(run, "invoking", op.label, function_id=target_id, child_run_id=child.id)

    # timers

    def wake(self, item: QueueItem) -> None:
        """A sleep ended: memoize ``null`` for the step."""
        with self._tx():
            run = self._running(item)
            if run is None:
                return
            self.store.delete_item(item.id)
            if item.step:
                self._resolve_branch(run, item.step, None, "Completed", via="sleep")

    def expire_pause(self, item: QueueItem) -> None:
        """A wait or invoke timed out: memoize ``null`` or the invoke timeout error."""
        with self._tx():
            run = self._running(item)
            if run is None:
                return
            self.store.delete_item(item.id)
            if not item.step or not self.store.delete_pause(str(item.payload.get("pause_id"))):
                return
            if item.kind == "invoke_timeout":
                memo: Any = {"error": dict(_INVOKE_TIMEOUT_ERROR)}
                self._resolve_branch(run, item.step, memo, "Failed", via="timeout")
            else:
                self._resolve_branch(run, item.step, None, "Completed", via="timeout")

    def expire_run(self, item: QueueItem) -> None:
        """A ``timeouts.start``/``finish`` deadline passed: cancel the run if it still applies."""
        with self._tx():
            run = self._running(item)
            if run is None:
                return
            self.store.delete_item(item.id)
            which = item.payload.get("which")
            if which == "start" and run.started_at is not None:
                return
            verb = "started" if which == "start" else "finished"
            seconds = float(item.payload.get("seconds") or 0)
            self._cancel(run, f"timeouts.{which}: not {verb} within {seconds:g}s")

    def lease(self, now: float, lease_seconds: float, limit: int) -> list[QueueItem]:
        """Lease due work; calls over a concurrency limit wait, noted once in their run's history."""
        admit = self.admission.admitter(now)
        held: list[tuple[QueueItem, str]] = []

        def gate(item: QueueItem) -> bool:
            full = admit(item)
            if full is not None:
                held.append((item, full))
            return full is None

        with self._tx():
            items = self.store.lease_due(now, lease_seconds, limit, gate)
            for item, full in held:
                run = self.store.get_run(item.run_id or "")
                if item.payload.get("held") or run is None:
                    continue
                self.store.set_payload(item.id, held=True)
                step = None if item.step == DISCOVERY else self._step_name(run, item.step)
                self._history(run, "concurrency_limited", step, reason=f"concurrency: {full}")
        return items

    def fire_cron(self, item: QueueItem) -> None:
        """Start a run for a due cron tick and queue the next tick, in one transaction."""
        with self._tx():
            cron = item.payload.get("cron")
            fn = self.functions.get(item.function_id or "")
            if fn is None or not isinstance(cron, str) or cron not in {t.cron for t in fn.triggers}:
                self.store.delete_item(item.id)
                return
            now = self.clock()
            event = {"id": new_ulid(), "name": EV_CRON, "data": {"cron": cron}, "user": {},
                     "ts": int(now * 1000)}  # fmt: skip
            self.store.insert_event(event, now)
            self._start_run(fn, [event])
            jitter = max(t.jitter for t in fn.triggers if t.cron == cron)
            # Continue from the tick just fired (its time before jitter), unless it is older than
            # its jitter explains (the engine was down): then skip missed ticks, as without jitter.
            fired = item.payload.get("tick")
            after = fired if isinstance(fired, int | float) and now - fired <= jitter else now
            tick = parse_cron(cron).next_after(after)
            self.store.reschedule(item.id, _jittered(tick, jitter), 0, tick=tick)

    def run_item(self, item: QueueItem) -> None:
        """Apply a leased item of any kind but ``call`` (those need the app: see ``Engine``)."""
        handler = {
            "event": self.process_event,
            "sleep": self.wake,
            "wait_timeout": self.expire_pause,
            "invoke_timeout": self.expire_pause,
            "cron": self.fire_cron,
            "debounce": self.flush_buffer,
            "batch": self.flush_buffer,
            "run_timeout": self.expire_run,
        }.get(item.kind)
        if handler is None:
            log.warning("dropping queue item %d of unknown kind %r", item.id, item.kind)
            handler = self.drop_item
        handler(item)

    def retry_later(self, item: QueueItem, delay: float) -> None:
        """Put back an item whose processing failed unexpectedly (if it still exists)."""
        with self._tx():
            if self.store.get_item(item.id) is not None:
                self.store.reschedule(item.id, self.clock() + delay, item.attempt)

    def drop_item(self, item: QueueItem) -> None:
        """Discard an item of a kind this engine does not know (e.g. from a newer version)."""
        with self._tx():
            self.store.delete_item(item.id)


@functools.lru_cache(maxsize=10_000)
def _compiled(source: str) -> Expression | None:
    """Compile once per distinct source (wait conditions are per-run, hence the bound)."""
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        log.warning("invalid expression %r: %s", source, exc)
        return None


def _jittered(tick: float, jitter: float) -> float:
    """When a cron tick fires: ``tick`` delayed by a random [0, ``jitter``] seconds."""
    return tick + random.uniform(0, jitter) if jitter else tick


def _missing_error(op: Op) -> dict[str, Any]:
    return {"name": "Error", "message": f"step {op.label!r} failed without error details"}
