"""Flow-control decisions against the store: which runs start, when, and which calls may lease.

The machine asks and records history; this module only reads and updates flow state (GCRA
arrival times, run keys, debounce/batch buffers) inside the machine's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inngest_mw_dev.flow import (
    BatchRule,
    DebounceRule,
    evaluate_key,
    gcra,
    matches,
    next_tat,
    priority_seconds,
)
from inngest_mw_dev.kinds import QueueKind
from inngest_mw_dev.registration import FunctionDef
from inngest_mw_dev.store import BufferRow, QueueItem, Store

__all__ = ["CONCURRENCY", "SINGLETON", "Admission", "Flush", "StartPlan"]

CONCURRENCY, SINGLETON = "concurrency", "singleton"
# Buffers are keyed by the kind of the queue item that flushes them.
DEBOUNCE, BATCH = QueueKind.DEBOUNCE, QueueKind.BATCH


@dataclass(frozen=True, slots=True)
class StartPlan:
    """When a new run's first call becomes due, and why it differs from now."""

    run_at: float
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Flush:
    """Buffered events ready to start one run."""

    function_id: str
    event_ids: list[str]
    reason: str


class Admission:
    """Flow-control state transitions for one store; the caller owns the transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # starting runs

    def skip_reason(self, fn: FunctionDef, event: dict[str, Any], now: float) -> str | None:
        """Why a new run must be skipped (rate limit, idempotency, singleton), else None.

        A run that is admitted consumes its rate-limit slot right away.
        """
        flow = fn.flow
        if flow.singleton is not None and flow.singleton.mode == "skip":
            key = self.singleton_key(fn, event)
            if self.store.runs_with_key(SINGLETON, key):
                return "singleton: a run with the same key is already running"
        rate = flow.rate
        if rate is None:
            return None
        state_key = f"{fn.id}:rate:{evaluate_key(rate.key, event)}"
        tat = self.store.get_tat(state_key)
        at = gcra(tat, now, limit=rate.limit, period=rate.period, burst=rate.limit)
        if at > now:
            return f"{rate.label}: {rate.limit} run(s) per {rate.period:g}s reached"
        self.store.set_tat(state_key, next_tat(tat, now, limit=rate.limit, period=rate.period))
        return None

    def singleton_key(self, fn: FunctionDef, event: dict[str, Any]) -> str:
        rule = fn.flow.singleton
        return f"{fn.id}:{evaluate_key(rule.key if rule else None, event)}"

    def plan_start(self, fn: FunctionDef, event: dict[str, Any], now: float) -> StartPlan:
        """Throttle delays the start; priority shifts it (earlier is leased first)."""
        flow = fn.flow
        run_at, reasons = now, []
        throttle = flow.throttle
        if throttle is not None:
            state_key = f"{fn.id}:throttle:{evaluate_key(throttle.key, event)}"
            tat = self.store.get_tat(state_key)
            at = gcra(tat, now, limit=throttle.limit, period=throttle.period, burst=throttle.burst)
            self.store.set_tat(
                state_key, next_tat(tat, at, limit=throttle.limit, period=throttle.period)
            )
            if at > now:
                run_at = at
                reasons.append(f"throttle: {throttle.limit} start(s) per {throttle.period:g}s")
        factor = priority_seconds(flow.priority, event)
        if factor:
            run_at -= factor
            reasons.append(f"priority: {factor:+d}s")
        return StartPlan(run_at, reasons)

    def hold_keys(self, fn: FunctionDef, run_id: str, event: dict[str, Any]) -> None:
        """Record the run's concurrency and singleton keys (dropped when the run ends)."""
        for index, rule in enumerate(fn.flow.concurrency):
            value = evaluate_key(rule.key, event)
            # fn scope partitions per function; env/account keys are shared by every function
            # whose key evaluates to the same value, as on the server.
            slot = f"fn:{fn.id}:{index}:{value}" if rule.scope == "fn" else f"{rule.scope}:{value}"
            self.store.add_run_key(run_id, CONCURRENCY, slot, rule.limit)
        if fn.flow.singleton is not None:
            self.store.add_run_key(run_id, SINGLETON, self.singleton_key(fn, event))

    # leasing calls

    def admitter(self, now: float) -> Callable[[QueueItem], str | None]:
        """A lease filter keeping calls in flight per concurrency key at or under its limit.

        It answers None to admit an item (counting it as in flight) or the full key's name.
        """
        if not self.store.has_run_keys(CONCURRENCY):
            return _admit_all  # no run holds a concurrency key (the common case)
        inflight = self.store.leased_calls_by_key(CONCURRENCY, now)

        def admit(item: QueueItem) -> str | None:
            if item.kind != QueueKind.CALL or item.run_id is None:
                return None
            slots = self.store.run_keys(item.run_id, CONCURRENCY)
            for slot, limit in slots:
                if inflight.get(slot, 0) >= limit:
                    return f"{slot} (limit {limit})"
            for slot, _ in slots:
                inflight[slot] = inflight.get(slot, 0) + 1
            return None

        return admit

    # debounce and batching

    def debounce(self, fn_id: str, rule: DebounceRule, event: dict[str, Any], now: float) -> None:
        """Hold ``event`` as the key's latest; the timer restarts, capped by ``timeout``."""
        key = evaluate_key(rule.key, event)
        buffer = self.store.get_buffer(fn_id, DEBOUNCE, key)
        first_at = buffer.first_at if buffer else now
        due = now + rule.period
        if rule.timeout is not None:
            due = min(due, first_at + rule.timeout)
        if buffer is None or self.store.get_item(buffer.item_id) is None:
            item_id = self.store.enqueue(DEBOUNCE, due, function_id=fn_id, payload={"key": key})
        else:
            item_id = buffer.item_id
            self.store.reschedule(item_id, due, 0)
        held = [*(buffer.events if buffer else []), event["id"]]
        self.store.put_buffer(BufferRow(fn_id, DEBOUNCE, key, held, first_at, item_id))

    def batch(self, fn_id: str, rule: BatchRule, event: dict[str, Any], now: float) -> Flush | None:
        """Add ``event`` to its batch; a full batch is returned to start at once.

        Events the batch's ``if`` rejects are returned alone, to run unbatched.
        """
        if not matches(rule.condition, event):
            return Flush(fn_id, [event["id"]], "")
        key = evaluate_key(rule.key, event)
        buffer = self.store.get_buffer(fn_id, BATCH, key)
        if buffer is None:
            item_id = self.store.enqueue(
                BATCH, now + rule.timeout, function_id=fn_id, payload={"key": key}
            )
            buffer = BufferRow(fn_id, BATCH, key, [], now, item_id)
        buffer.events.append(event["id"])
        if len(buffer.events) >= rule.max_size:
            self.store.delete_buffer(fn_id, BATCH, key)
            self.store.delete_item(buffer.item_id)
            return Flush(fn_id, buffer.events, f"batch full ({rule.max_size} events)")
        self.store.put_buffer(buffer)
        return None

    def take(self, item: QueueItem, now: float) -> Flush | None:
        """The buffer a due debounce/batch timer releases; None when it was moved or emptied."""
        current = self.store.get_item(item.id)
        if current is None or current.run_at > now:
            return None  # a newer event pushed the timer back after this lease was taken
        self.store.delete_item(item.id)
        key = str(item.payload.get("key", ""))
        buffer = self.store.get_buffer(item.function_id or "", item.kind, key)
        if buffer is None or buffer.item_id != item.id or not buffer.events:
            return None
        self.store.delete_buffer(buffer.function_id, item.kind, key)
        count = len(buffer.events)
        if item.kind == DEBOUNCE:
            # Only the last event starts the run; the earlier ones are superseded.
            return Flush(buffer.function_id, buffer.events[-1:], f"debounced {count} event(s)")
        return Flush(buffer.function_id, buffer.events, f"batch timeout ({count} event(s))")


def _admit_all(item: QueueItem) -> str | None:
    return None
