"""The run state machine: every durable transition of apps, events, runs, steps and pauses.

No I/O here besides SQLite. Each public method is one transaction (or joins the engine's
``batch``), so a step's output and the queue items that follow from it commit together. The
engine does the HTTP calls; which items a transition queues and when they fall due is
``scheduling``'s; history entries are ``history``'s; flow-control decisions come from
``admission`` and are recorded in each run's history.
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

from inngest_mw.hooktrace import SeenTrace
from inngest_mw_dev.admission import SINGLETON, Admission, Flush
from inngest_mw_dev.canonical import canonical_text, utf8_len
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
from inngest_mw_dev.gateway import GatewayCall, GatewayDone, request_problem, summary
from inngest_mw_dev.history import History, HistoryNote
from inngest_mw_dev.ids import deterministic_uuid, new_ulid
from inngest_mw_dev.kinds import DISCOVERY, Opcode, PauseKind, QueueKind, RunStatus, StepStatus
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
from inngest_mw_dev.runmeta import RunMetadata
from inngest_mw_dev.scheduling import Scheduling
from inngest_mw_dev.store import AppRow, PauseRow, QueueItem, RequestHooksRow, RunRow, Store
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
        with self.history.tx():
            self.store.upsert_app(
                AppRow(
                    app_id,
                    reg.app_name,
                    reg.url,
                    reg.sdk,
                    reg.framework,
                    reg.checksum,
                    sync_id,
                    now,
                )
            )
            for fn in reg.functions:
                self.store.upsert_function(fn.id, app_id, fn.name, fn.config, now)
                self.functions[fn.id] = fn
                self.function_apps[fn.id] = app_id
                self.schedule.sync_crons(fn, now)
            for gone in self.store.archive_functions(app_id, [f.id for f in reg.functions], now):
                self.functions.pop(gone, None)
                self.function_apps.pop(gone, None)
                for item in self.store.cron_items(gone):
                    self.store.delete_item(item.id)
        return {"ok": True, "modified": True, "app_id": app_id, "sync_id": sync_id}

    # events

    def ingest(self, events: list[dict[str, Any]]) -> None:
        """Store accepted events (new IDs only) and queue their processing, atomically."""
        now = self.clock()
        with self.history.tx():
            self.store.insert_events(events, now)

    def _emit(self, name: str, data: dict[str, Any], event_id: str | None = None) -> None:
        now = self.clock()
        event = {
            "id": event_id or new_ulid(),
            "name": name,
            "data": data,
            "user": {},
            "ts": int(now * 1000),
        }
        if self.store.insert_event(event, now):
            self.store.enqueue(QueueKind.EVENT, now, payload={"event_id": event["id"]})

    def process_event(self, item: QueueItem) -> dict[str, Any] | None:
        """Apply one stored event: cancellations, resumed waits and invokes, then new runs.

        Returns the event when nothing took it: no function's trigger matched it and no pause
        waited for its name (for the live log's "matched no function").
        """
        with self.history.tx():
            self.store.delete_item(item.id)
            event = self.store.get_event(str(item.payload.get("event_id")))
            if event is None:
                return None
            name = str(event.get("name", ""))
            now = self.clock()
            pauses = self.store.pauses_for_event(name, now)
            for pause in pauses:
                if pause.kind not in (PauseKind.CANCEL, PauseKind.WAIT):
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
                if pause.kind == PauseKind.CANCEL:
                    self._cancel(run, f"cancelled by event {name} ({event.get('id')})")
                elif pause.step is not None:
                    self.store.delete_pause_items(run.id, pause.step)
                    self._resolve_branch(run, pause.step, event, StepStatus.COMPLETED, via=name)
            if name == EV_FINISHED:
                self._resume_invokers(event)
            triggered = False
            for fn in list(self.functions.values()):
                if self._triggered(fn, event):
                    triggered = True
                    self._schedule(fn, event)
            return None if triggered or pauses else event

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
            if pause.kind != PauseKind.INVOKE or pause.step is None:
                continue
            if not self.store.delete_pause(pause.id):
                continue
            run = self.store.get_run(pause.run_id)
            if run is None or run.status != RUNNING:
                continue
            self.store.delete_pause_items(run.id, pause.step)
            if "error" in data and data["error"] is not None:
                memo: dict[str, Any] = {"error": data["error"]}
                status = StepStatus.FAILED
            else:
                memo, status = {"data": data.get("result")}, StepStatus.COMPLETED
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
        with self.history.tx():
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
            self.history.record(run, "skipped", event=events[0].get("name"), reason=reason)
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

    def create_run(
        self,
        fn_id: str,
        events: list[dict[str, Any]],
        *,
        note: str = "",
        prepare: Callable[[RunRow], None] | None = None,
    ) -> RunRow | None:
        """Start a run of ``fn_id`` now, past debounce, batching, rate limit and idempotency.

        For run control (invoke from the UI or CLI, rerun). ``prepare`` runs in the same
        transaction, before the run's first call can be leased (e.g. to seed memoized steps).
        None when the function is not registered.
        """
        with self.history.tx():
            fn = self.functions.get(fn_id)
            if fn is None:
                return None
            run = self._create_run(fn, events, note=note)
            if prepare is not None:
                prepare(run)
            return run

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a running run; False when it is unknown or already ended."""
        with self.history.tx():
            run = self.store.get_run(run_id)
            if run is None or run.status != RUNNING:
                return False
            self._cancel(run, reason)
            return True

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

    # calls

    def prepare_call(self, item: QueueItem) -> PreparedCall | None:
        """Build the call request for a ``call`` item, or None when there is nothing to call."""
        with self.history.tx():
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
                self.history.record(run, "started")
                if fn.flow.finish_timeout is not None:
                    self.schedule.run_timeout(run, "finish", fn.flow.finish_timeout, now)
            step_id = item.step or DISCOVERY
            if step_id != DISCOVERY:
                existing = self.store.get_step(run.id, step_id)
                self.store.upsert_step(
                    run.id,
                    step_id,
                    name=existing.name if existing else step_id,
                    op=existing.op if existing else Opcode.STEP_RUN,
                    status=StepStatus.RUNNING,
                    now=now,
                    attempts=item.attempt + 1,
                )
            qi_id = None
            if step_id == DISCOVERY:  # only a discovery request may checkpoint: fence it
                qi_id = f"{item.id}-{next(self._dispatch_seq)}"
                self._dispatches[item.id] = (qi_id, run.id)
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
                qi_id=qi_id,
            )
            return PreparedCall(app.url, run.function_id, step_id, run.id, body)

    def apply_outcome(
        self, item: QueueItem, outcome: CallOutcome | GatewayDone, started_at: float
    ) -> None:
        """Commit what one call produced: completion, a retry, or the ops it reported (or what
        a gateway request got: see ``apply_gateway``)."""
        if isinstance(outcome, GatewayDone):
            self.apply_gateway(item, outcome)
            return
        self._dispatches.pop(item.id, None)  # answered (or given up on): no longer current
        with self.history.tx():
            run = self._running(item)
            if run is None:
                return
            if outcome.hooks is not None and (outcome.hooks.calls or outcome.hooks.problem):
                self._record_hooks(run, item, outcome, outcome.hooks, started_at)
            if isinstance(outcome, Completed):
                self.store.delete_item(item.id)
                self._finalize(run, COMPLETED, output=outcome.output)
            elif isinstance(outcome, CallFailed):
                self._retry_or_fail(run, item, outcome)
            elif not outcome.ops and item.step == DISCOVERY and run.pending == 0:
                # Nothing would ever call the function again: treat it as a failed attempt.
                self._retry_or_fail(
                    run,
                    item,
                    CallFailed(
                        {"name": "InvalidResponseError", "message": "app reported no ops"},
                        True,
                        None,
                        "empty op list",
                    ),
                )
            else:
                self._apply_ops(run, item, outcome, started_at)

    def _record_hooks(
        self, run: RunRow, item: QueueItem, outcome: CallOutcome, seen: SeenTrace, started: float
    ) -> None:
        """Keep what the app's middleware did in this request, with the attempt it belongs to."""
        if isinstance(outcome, Completed):
            said = "completed"
        elif isinstance(outcome, CallFailed):
            said = f"failed: {outcome.reason}"[:200]
        else:
            said = f"reported {', '.join(op.label for op in outcome.ops[:5]) or 'no steps'}"[:200]
        calls = [call.to_json() for call in seen.calls]
        self.store.add_request_hooks(RequestHooksRow(run.id, started, item.step or DISCOVERY,
                                                     item.attempt, said, calls, seen.more,
                                                     seen.problem))  # fmt: skip

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

    def _apply_ops(
        self, run: RunRow, item: QueueItem, response: OpsResponse, started_at: float
    ) -> None:
        if item.step != DISCOVERY:
            self.store.delete_item(item.id)
            self._apply_ops_of(run, item, response, started_at)
            return
        with self.schedule.reusing(run, item):
            self._apply_ops_of(run, item, response, started_at)

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
            self._add_pending(run, -1)
        if len([op for op in ops if op.op != Opcode.NONE]) > 1:
            self.store.update_run(run.id, force_plan=True)
            run.force_plan = True
        progressed = targeted
        for op in ops:
            if run.status != RUNNING:
                return
            if (
                op.op != Opcode.NONE
                and op.op not in (Opcode.RUN_COMPLETE, Opcode.DISCOVERY_REQUEST)
                and not op.id
            ):
                self._finalize(
                    run, FAILED, error={"name": "Error", "message": f"{op.op} op without an id"}
                )
                return
            progressed = self._apply_op(run, item, op, response, started_at) or progressed
        if run.status == RUNNING and progressed and run.pending == 0:
            self.schedule.discovery(run)

    def _steps_with(self, run: RunRow, ops: list[Op]) -> int:
        """The run's distinct steps once ``ops`` are recorded; 0 when they add none (no count)."""
        ids = {op.id for op in ops if op.op not in _NOT_STEPS}
        if not ids:
            return 0
        known = self.store.step_hashes(run.id)
        new = ids - known
        return len(known) + len(new) if new else 0

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

    def _apply_op(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        """Handle one opcode; True when a step finished (so discovery may continue)."""
        try:
            opcode = Opcode(op.op)
        except ValueError:
            error = {"name": "Error", "message": f"unknown opcode {op.op!r}"}
            self._finalize(
                run, FAILED, error=error, reason=f"app sent unsupported opcode {op.op!r}"
            )
            return False
        if op.metadata is not None:
            self.metadata.inband(run, op, item.attempt, self.history)
        return _OP_HANDLERS[opcode](self, run, item, op, response, started_at)

    def _op_step_run(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        memo = {"data": op.data}
        encoded = canonical_text(memo)  # once: sized here, stored as it is, spliced in calls
        # Checked here too because not every SDK refuses an oversized output itself.
        too_large = step_output_error(op.label, op.data, utf8_len(encoded) - _DATA_WRAPPER)
        if too_large is None:
            self._save_step(run, op, memo, StepStatus.COMPLETED, started_at, encoded)
        else:
            self._save_step(run, op, {"error": too_large}, StepStatus.FAILED, started_at)
        return True

    def _op_step_error(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        error = op.error if isinstance(op.error, dict) else _missing_error(op)
        if response.no_retry or item.attempt + 1 >= run.max_attempts:
            self._save_step(run, op, {"error": error}, StepStatus.FAILED, started_at)
            return True
        now = self.clock()
        at = response.retry_at or now + backoff_seconds(item.attempt, self.retry_base)
        self.schedule.call(run, op.id, at, attempt=item.attempt + 1)
        self._add_pending(run, 1)
        attempts = item.attempt + 1
        self._mark_step(run, op.id, StepStatus.RETRYING, op=op, attempts=attempts, error=error)
        self.history.record(
            run,
            "retry_scheduled",
            op.label,
            attempt=attempts,
            max_attempts=run.max_attempts,
            reason=f"{error.get('name', 'Error')}: {error.get('message', '')}",
            delay_ms=round((at - now) * 1000),
        )
        return False

    def _op_step_failed(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        error = op.error if isinstance(op.error, dict) else _missing_error(op)
        self._save_step(run, op, {"error": error}, StepStatus.FAILED, started_at)
        return True

    def _op_step_planned(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        self.schedule.call(run, op.id, self.clock())
        self._add_pending(run, 1)
        self._mark_step(run, op.id, StepStatus.PLANNED, op=op)
        return False

    def _op_sleep(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        self._start_sleep(run, op)
        return False

    def _op_wait(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        self._start_wait(run, op)
        return False

    def _op_invoke(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        self._start_invoke(run, op)
        return False

    def _op_gateway(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        opcode = Opcode(op.op)
        problem = request_problem(opcode, op.opts)
        if problem is not None:
            self._fail_op(run, op, f"{op.op}: {problem}")
            return False
        self.store.enqueue(
            QueueKind.GATEWAY,
            self.clock(),
            run_id=run.id,
            function_id=run.function_id,
            step=op.id,
            payload={"op": opcode, "request": op.opts},
        )
        self._add_pending(run, 1)
        self._mark_step(run, op.id, StepStatus.RUNNING, op=op)
        self.history.record(run, "requesting", op.label, **summary(opcode, op.opts))
        return False

    def _op_signal(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        self._start_signal_wait(run, op)
        return False

    def _op_run_complete(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        self._finalize(run, COMPLETED, output=op.data)
        return False

    def _op_discovery(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        return True

    def _op_none(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
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

    def _fail_op(self, run: RunRow, op: Op, message: str) -> None:
        self._finalize(
            run,
            FAILED,
            error={"name": "Error", "message": message},
            reason=f"step {op.label!r}: {message}",
        )

    def _start_sleep(self, run: RunRow, op: Op) -> None:
        now = self.clock()
        try:
            until = sleep_until(op.opts.get("duration"), op.name, now)
        except ValueError as exc:
            self._fail_op(run, op, str(exc))
            return
        self.schedule.step_timer(QueueKind.SLEEP, run, op.id, until)
        self._add_pending(run, 1)
        # Started at the instant the timer counts from, so a 1 s sleep never shows as 999 ms.
        self._mark_step(run, op.id, StepStatus.SLEEPING, op=op, now=now)
        self.history.record(run, "sleeping", op.label, until=until, seconds=round(until - now, 3))

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
        self.store.insert_pause(
            PauseRow(
                pause_id, run.id, op.id, PauseKind.WAIT, event_name, expression, None, now + timeout
            )
        )
        self.schedule.step_timer(
            QueueKind.WAIT_TIMEOUT, run, op.id, now + timeout, pause_id=pause_id
        )
        self._add_pending(run, 1)
        self._mark_step(run, op.id, StepStatus.WAITING, op=op)
        self.history.record(
            run, "waiting", op.label, event=event_name, expression=expression, timeout_s=timeout
        )

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
        self._add_pending(run, 1)
        self._mark_step(run, op.id, StepStatus.INVOKING, op=op)
        target = self.functions.get(target_id)
        if target is None:
            error = {"name": "Error", "message": f"could not invoke {target_id}: no such function"}
            self._resolve_branch(run, op.id, {"error": error}, StepStatus.FAILED, via="invoke")
            return
        correlation = f"{run.id}.{op.id}"
        expires = now + (timeout if timeout is not None else _YEAR)
        pause_id = f"{run.id}:{op.id}"
        self.store.insert_pause(
            PauseRow(
                pause_id,
                run.id,
                op.id,
                PauseKind.INVOKE,
                EV_FINISHED,
                f'async.data.correlation_id == "{correlation}"',
                correlation,
                expires,
            )
        )
        self.schedule.step_timer(QueueKind.INVOKE_TIMEOUT, run, op.id, expires, pause_id=pause_id)
        data = payload.get("data")
        user = payload.get("user")
        event: dict[str, Any] = {
            "id": new_ulid(),
            "name": EV_INVOKED,
            "ts": int(now * 1000),
            "data": {
                **(data if isinstance(data, dict) else {}),
                "_inngest": {
                    "fn_id": target_id,
                    "correlation_id": correlation,
                    "source_app_id": run.app_id,
                    "source_fn_id": run.function_id,
                },
            },
            "user": user if isinstance(user, dict) else {},
        }
        if isinstance(payload.get("v"), str):
            event["v"] = payload["v"]
        self.store.insert_event(event, now)
        child = self._create_run(target, [event], correlation_id=correlation)
        self.history.record(run, "invoking", op.label, function_id=target_id, child_run_id=child.id)

    def _start_signal_wait(self, run: RunRow, op: Op) -> None:
        """Wait for a signal; a signal name is held by one waiting run at a time."""
        signal = op.opts.get("signal") or op.name
        if not isinstance(signal, str) or not signal:
            self._fail_op(run, op, "waitForSignal needs a signal name")
            return
        timeout = self._timeout(run, op, op.opts.get("timeout"), required=False)
        if run.status != RUNNING:
            return
        now = self.clock()
        expires = now + (timeout if timeout is not None else _YEAR)  # the server's default
        self._add_pending(run, 1)
        self._mark_step(run, op.id, StepStatus.WAITING, op=op)
        holders = [p for p in self._signal_waits(signal, now) if p.run_id != run.id]
        if holders and op.opts.get("conflict") != "replace":
            error = {
                "name": "SignalConflictError",
                "message": f"signal {signal!r} is already awaited by run {holders[0].run_id};"
                " wait with on_conflict='replace' to take it over",
            }
            self._resolve_branch(run, op.id, {"error": error}, StepStatus.FAILED, via="signal")
            return
        for holder in holders:  # replaced: that wait ends as if it had timed out
            other = self.store.get_run(holder.run_id)
            if other is not None and holder.step and self.store.delete_pause(holder.id):
                self.store.delete_pause_items(other.id, holder.step)
                self.history.record(other, "signal_replaced", None, signal=signal, by=run.id)
                self._resolve_branch(other, holder.step, None, StepStatus.COMPLETED, via="replaced")
        pause_id = f"{run.id}:{op.id}"
        self.store.insert_pause(
            PauseRow(
                pause_id, run.id, op.id, PauseKind.SIGNAL, "", None, _signal_key(signal), expires
            )
        )
        self.schedule.step_timer(QueueKind.WAIT_TIMEOUT, run, op.id, expires, pause_id=pause_id)
        self.history.record(run, "waiting_signal", op.label, signal=signal, timeout_s=timeout)

    def _signal_waits(self, signal: str, now: float) -> list[PauseRow]:
        return [
            p
            for p in self.store.pauses_for_correlation(_signal_key(signal))
            if p.kind == PauseKind.SIGNAL and p.expires_at > now
        ]

    def resume_signal(self, signal: str, data: object) -> str | None:
        """``POST /v1/signals``: resume the run waiting for ``signal``; its ID, or None."""
        with self.history.tx():
            for pause in self._signal_waits(signal, self.clock()):
                run = self.store.get_run(pause.run_id)
                if run is None or run.status != RUNNING or not pause.step:
                    continue
                if not self.store.delete_pause(pause.id):
                    continue
                self.store.delete_pause_items(run.id, pause.step)
                memo = {"data": {"signal": signal, "data": data}}
                self._resolve_branch(run, pause.step, memo, StepStatus.COMPLETED, via="signal")
                return run.id
        return None

    def checkpoint(
        self, run_id: str, ops: list[Op], started_at: float, qi_id: str | None = None
    ) -> tuple[int, str] | None:
        """``POST /v1/checkpoint/{run}/async``: memoize steps an app ran within one request.

        None when saved; else the status and reason (404 no such running run, 409 a request
        this engine no longer waits for, 400 an op that is not a finished step, 413 over a size
        limit). Each step is saved as its own ``StepRun`` would be, so a crash before the request
        ends loses only the step in progress.
        """
        with self.history.tx():
            run = self.store.get_run(run_id)
            if run is None or run.status != RUNNING:
                return 404, f"run {run_id} is not running"
            if qi_id is not None and not self._is_current(qi_id, run_id):
                return 409, f"stale dispatch: request {qi_id} of run {run_id} was superseded"
            for op in ops:
                if op.op not in (Opcode.STEP_RUN, Opcode.STEP) or not op.id:
                    return 400, f"cannot checkpoint async steps: {op.op or 'an op without a name'}"
            for op in ops:
                memo = {"data": op.data}
                encoded = canonical_text(memo)
                too_large = step_output_error(op.label, op.data, utf8_len(encoded) - _DATA_WRAPPER)
                if too_large is not None:
                    return 413, str(too_large.get("message"))
                if op.metadata is not None:
                    self.metadata.inband(run, op, 0, self.history)
                self._save_step(run, op, memo, StepStatus.COMPLETED, started_at, encoded)
                if run.status != RUNNING:  # the state grew past its limit: the run has failed
                    return 413, "the run's state is over its size limit"
            return None

    def _is_current(self, qi_id: str, run_id: str) -> bool:
        item, _, _ = qi_id.partition("-")
        return (
            item.isascii()
            and item.isdigit()
            and self._dispatches.get(int(item))
            == (
                qi_id,
                run_id,
            )
        )

    def prepare_gateway(self, item: QueueItem) -> GatewayCall | None:
        """The request a ``gateway`` item makes, or None when its run has ended."""
        with self.history.tx():
            run = self._running(item)
            if run is None or not item.step:
                return None
            opcode = Opcode(str(item.payload.get("op")))
            return GatewayCall(run.id, item.step, opcode, dict(item.payload.get("request") or {}))

    def apply_gateway(self, item: QueueItem, done: GatewayDone) -> None:
        """Memoize a gateway answer, or retry the request, or memoize its last failure."""
        with self.history.tx():
            run = self._running(item)
            if run is None or not item.step:
                return
            step = self.schedule.step_name(run, item.step)
            if done.failed and done.retriable and item.attempt + 1 < run.max_attempts:
                now = self.clock()
                at = now + backoff_seconds(item.attempt, self.retry_base)
                self.store.reschedule(item.id, at, item.attempt + 1)
                error = done.memo.get("error")
                self._mark_step(
                    run, item.step, StepStatus.RETRYING, attempts=item.attempt + 1, error=error
                )
                self.history.record(
                    run,
                    "retry_scheduled",
                    step,
                    reason=done.reason,
                    attempt=item.attempt + 1,
                    max_attempts=run.max_attempts,
                    delay_ms=round((at - now) * 1000),
                )
                return
            self.store.delete_item(item.id)
            self.history.record(
                run, "answered", step, status=done.status, duration_ms=done.duration_ms
            )
            status = StepStatus.FAILED if done.failed else StepStatus.COMPLETED
            self._resolve_branch(run, item.step, done.memo, status, via="gateway")

    # timers

    def wake(self, item: QueueItem) -> None:
        """A sleep ended: memoize ``null`` for the step."""
        with self.history.tx():
            run = self._running(item)
            if run is None:
                return
            self.store.delete_item(item.id)
            if item.step:
                self._resolve_branch(run, item.step, None, StepStatus.COMPLETED, via="sleep")

    def expire_pause(self, item: QueueItem) -> None:
        """A wait or invoke timed out: memoize ``null`` or the invoke timeout error."""
        with self.history.tx():
            run = self._running(item)
            if run is None:
                return
            self.store.delete_item(item.id)
            if not item.step or not self.store.delete_pause(str(item.payload.get("pause_id"))):
                return
            if item.kind == QueueKind.INVOKE_TIMEOUT:
                memo: Any = {"error": dict(_INVOKE_TIMEOUT_ERROR)}
                self._resolve_branch(run, item.step, memo, StepStatus.FAILED, via="timeout")
            else:
                self._resolve_branch(run, item.step, None, StepStatus.COMPLETED, via="timeout")

    def expire_run(self, item: QueueItem) -> None:
        """A ``timeouts.start``/``finish`` deadline passed: cancel the run if it still applies."""
        with self.history.tx():
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
        """Lease due work (see ``Scheduling.lease``)."""
        return self.schedule.lease(now, lease_seconds, limit)

    def fire_cron(self, item: QueueItem) -> None:
        """Start a run for a due cron tick and queue the next tick, in one transaction."""
        with self.history.tx():
            cron = item.payload.get("cron")
            fn = self.functions.get(item.function_id or "")
            if fn is None or not isinstance(cron, str) or cron not in {t.cron for t in fn.triggers}:
                self.store.delete_item(item.id)
                return
            now = self.clock()
            event = {
                "id": new_ulid(),
                "name": EV_CRON,
                "data": {"cron": cron},
                "user": {},
                "ts": int(now * 1000),
            }
            self.store.insert_event(event, now)
            self._start_run(fn, [event])
            self.schedule.next_cron(item, fn, cron, now)

    def run_item(self, item: QueueItem) -> None:
        """Apply a leased item of any kind but ``call`` (those need the app: see ``Engine``)."""
        handlers: dict[str, Callable[[QueueItem], object]] = {
            QueueKind.EVENT: self.process_event,
            QueueKind.SLEEP: self.wake,
            QueueKind.WAIT_TIMEOUT: self.expire_pause,
            QueueKind.INVOKE_TIMEOUT: self.expire_pause,
            QueueKind.CRON: self.fire_cron,
            QueueKind.DEBOUNCE: self.flush_buffer,
            QueueKind.BATCH: self.flush_buffer,
            QueueKind.RUN_TIMEOUT: self.expire_run,
        }
        handler = handlers.get(item.kind)
        if handler is None:
            log.warning("dropping queue item %d of unknown kind %r", item.id, item.kind)
            handler = self.drop_item
        handler(item)

    def retry_later(self, item: QueueItem, delay: float) -> None:
        """Put back an item whose processing failed unexpectedly (if it still exists)."""
        with self.history.tx():
            if self.store.get_item(item.id) is not None:
                self.store.reschedule(item.id, self.clock() + delay, item.attempt)

    def drop_item(self, item: QueueItem) -> None:
        """Discard an item of a kind this engine does not know (e.g. from a newer version)."""
        with self.history.tx():
            self.store.delete_item(item.id)


_OpHandler = Callable[[RunMachine, RunRow, QueueItem, Op, OpsResponse, float], bool]
# What each opcode does to its run; True when a step finished (so discovery may continue).
_OP_HANDLERS: dict[Opcode, _OpHandler] = {
    Opcode.STEP_RUN: RunMachine._op_step_run,
    Opcode.STEP: RunMachine._op_step_run,
    Opcode.STEP_ERROR: RunMachine._op_step_error,
    Opcode.STEP_FAILED: RunMachine._op_step_failed,
    Opcode.STEP_PLANNED: RunMachine._op_step_planned,
    Opcode.SLEEP: RunMachine._op_sleep,
    Opcode.WAIT_FOR_EVENT: RunMachine._op_wait,
    Opcode.INVOKE_FUNCTION: RunMachine._op_invoke,
    Opcode.GATEWAY: RunMachine._op_gateway,
    Opcode.AI_GATEWAY: RunMachine._op_gateway,
    Opcode.WAIT_FOR_SIGNAL: RunMachine._op_signal,
    Opcode.RUN_COMPLETE: RunMachine._op_run_complete,
    Opcode.DISCOVERY_REQUEST: RunMachine._op_discovery,
    Opcode.NONE: RunMachine._op_none,
}


@functools.lru_cache(maxsize=10_000)
def _compiled(source: str) -> Expression | None:
    """Compile once per distinct source (wait conditions are per-run, hence the bound)."""
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        log.warning("invalid expression %r: %s", source, exc)
        return None


def _signal_key(signal: str) -> str:
    """A signal's pause correlation; the prefix keeps it apart from invoke correlations."""
    return f"signal:{signal}"


def _missing_error(op: Op) -> dict[str, Any]:
    return {"name": "Error", "message": f"step {op.label!r} failed without error details"}
