"""What each opcode an app reports does to its run: memoize a step, plan, sleep, wait for an
event or a signal, invoke, make a gateway request, retry a step, or fail the run.

``OpHandling`` dispatches the ops of one response through ``_OP_HANDLERS`` (one handler per
``kinds.Opcode``), on top of ``runcore``'s shared transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inngest_mw_dev.canonical import canonical_text, utf8_len
from inngest_mw_dev.executor import (
    Op,
    OpsResponse,
)
from inngest_mw_dev.expr import ExpressionError, compile_expression, interpolate
from inngest_mw_dev.gateway import request_problem, summary
from inngest_mw_dev.ids import new_ulid
from inngest_mw_dev.kinds import DISCOVERY, Opcode, PauseKind, QueueKind, RunStatus, StepStatus
from inngest_mw_dev.limits import (
    MAX_OPS,
    MAX_STEPS,
    overflow_error,
    step_limit_error,
    step_output_error,
)
from inngest_mw_dev.runcore import (
    _DATA_WRAPPER,
    _NOT_STEPS,
    _YEAR,
    EV_FINISHED,
    EV_INVOKED,
    RunCore,
)
from inngest_mw_dev.store import PauseRow, QueueItem, RunRow
from inngest_mw_dev.timing import backoff_seconds, parse_seconds, sleep_until

__all__ = ["OpHandling"]


class OpHandling(RunCore):
    """The ops of a call's answer, applied to its run (see the module)."""

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
            if run.status != RunStatus.RUNNING:
                return
            if (
                op.op != Opcode.NONE
                and op.op not in (Opcode.RUN_COMPLETE, Opcode.DISCOVERY_REQUEST)
                and not op.id
            ):
                self._finalize(
                    run,
                    RunStatus.FAILED,
                    error={"name": "Error", "message": f"{op.op} op without an id"},
                )
                return
            progressed = self._apply_op(run, item, op, response, started_at) or progressed
        if run.status == RunStatus.RUNNING and progressed and run.pending == 0:
            self.schedule.discovery(run)

    def _steps_with(self, run: RunRow, ops: list[Op]) -> int:
        """The run's distinct steps once ``ops`` are recorded; 0 when they add none (no count)."""
        ids = {op.id for op in ops if op.op not in _NOT_STEPS}
        if not ids:
            return 0
        known = self.store.step_hashes(run.id)
        new = ids - known
        return len(known) + len(new) if new else 0

    def _apply_op(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        """Handle one opcode; True when a step finished (so discovery may continue)."""
        try:
            opcode = Opcode(op.op)
        except ValueError:
            error = {"name": "Error", "message": f"unknown opcode {op.op!r}"}
            self._finalize(
                run, RunStatus.FAILED, error=error, reason=f"app sent unsupported opcode {op.op!r}"
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
        self._finalize(run, RunStatus.COMPLETED, output=op.data)
        return False

    def _op_discovery(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        return True

    def _op_none(
        self, run: RunRow, item: QueueItem, op: Op, response: OpsResponse, started_at: float
    ) -> bool:
        return False

    def _fail_op(self, run: RunRow, op: Op, message: str) -> None:
        self._finalize(
            run,
            RunStatus.FAILED,
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
        if run.status != RunStatus.RUNNING:
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
        if run.status != RunStatus.RUNNING:
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


_OpHandler = Callable[[OpHandling, RunRow, QueueItem, Op, OpsResponse, float], bool]
# What each opcode does to its run; True when a step finished (so discovery may continue).
_OP_HANDLERS: dict[Opcode, _OpHandler] = {
    Opcode.STEP_RUN: OpHandling._op_step_run,
    Opcode.STEP: OpHandling._op_step_run,
    Opcode.STEP_ERROR: OpHandling._op_step_error,
    Opcode.STEP_FAILED: OpHandling._op_step_failed,
    Opcode.STEP_PLANNED: OpHandling._op_step_planned,
    Opcode.SLEEP: OpHandling._op_sleep,
    Opcode.WAIT_FOR_EVENT: OpHandling._op_wait,
    Opcode.INVOKE_FUNCTION: OpHandling._op_invoke,
    Opcode.GATEWAY: OpHandling._op_gateway,
    Opcode.AI_GATEWAY: OpHandling._op_gateway,
    Opcode.WAIT_FOR_SIGNAL: OpHandling._op_signal,
    Opcode.RUN_COMPLETE: OpHandling._op_run_complete,
    Opcode.DISCOVERY_REQUEST: OpHandling._op_discovery,
    Opcode.NONE: OpHandling._op_none,
}


def _signal_key(signal: str) -> str:
    """A signal's pause correlation; the prefix keeps it apart from invoke correlations."""
    return f"signal:{signal}"


def _missing_error(op: Op) -> dict[str, Any]:
    return {"name": "Error", "message": f"step {op.label!r} failed without error details"}
