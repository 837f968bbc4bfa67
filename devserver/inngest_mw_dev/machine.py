"""The run state machine: every durable transition of apps, events, runs, steps and pauses.

This module holds the entry points (registering apps, applying events, preparing calls and
applying their answers, timers, crons, signals, checkpoints, run control); they build on
``runcore`` (a run's life: created, resolved, finished) and ``opcodes`` (what each opcode of an
answer does). No I/O here besides SQLite. Each public method is one transaction (or joins the engine's
``batch``), so a step's output and the queue items that follow from it commit together. The
engine does the HTTP calls; which items a transition queues and when they fall due is
``scheduling``'s; history entries are ``history``'s; flow-control decisions come from
``admission`` and are recorded in each run's history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from inngest_mw.hooktrace import SeenTrace
from inngest_mw_dev.admission import SINGLETON, Flush
from inngest_mw_dev.canonical import canonical_text, utf8_len
from inngest_mw_dev.executor import (
    CallFailed,
    CallOutcome,
    Completed,
    Op,
    first_event_json,
    splice_body,
)
from inngest_mw_dev.gateway import GatewayCall, GatewayDone
from inngest_mw_dev.history import HistoryNote
from inngest_mw_dev.ids import deterministic_uuid, new_ulid
from inngest_mw_dev.kinds import DISCOVERY, Opcode, PauseKind, QueueKind, StepStatus
from inngest_mw_dev.limits import (
    step_output_error,
)
from inngest_mw_dev.opcodes import OpHandling
from inngest_mw_dev.registration import (
    FunctionDef,
    Registration,
    event_name_matches,
)
from inngest_mw_dev.runcore import (
    _DATA_WRAPPER,
    _INVOKE_TIMEOUT_ERROR,
    CANCELLED,
    COMPLETED,
    EV_CRON,
    EV_FINISHED,
    EV_INVOKED,
    FAILED,
    RUNNING,
    SKIPPED,
    PreparedCall,
)
from inngest_mw_dev.store import AppRow, QueueItem, RequestHooksRow, RunRow
from inngest_mw_dev.timing import backoff_seconds

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "EV_INVOKED",
    "FAILED",
    "RUNNING",
    "SKIPPED",
    "HistoryNote",
    "PreparedCall",
    "RunMachine",
]

log = logging.getLogger("inngest_mw_dev")


class RunMachine(OpHandling):
    """Owns the function registry and applies every state transition inside one transaction:
    the entry points the engine, the API and run control call (see ``runcore`` and
    ``opcodes`` for the transitions they build on)."""

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

    def ingest(self, events: list[dict[str, Any]]) -> None:
        """Store accepted events (new IDs only) and queue their processing, atomically."""
        now = self.clock()
        with self.history.tx():
            self.store.insert_events(events, now)

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
            if isinstance(outcome, Completed):  # _finalize drops the item with the run's others
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
        self.store.add_request_hooks(
            RequestHooksRow(
                run.id,
                started,
                item.step or DISCOVERY,
                item.attempt,
                said,
                calls,
                seen.more,
                seen.problem,
            )
        )

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
