"""Run control: send and invoke, cancel one run or many, rerun (optionally from a chosen step).

A rerun is a new run of the same function with the same events. Rerun from a step seeds the new
run with the original's memoized outputs of every step that finished before the chosen one, so
the SDK replays them from memory and their code is not called again; the chosen step and all
after it run anew. Which run a rerun came from is kept in its own table (``reruns``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inngest_mw_dev.ids import new_ulid
from inngest_mw_dev.ingest import normalize_events
from inngest_mw_dev.machine import EV_INVOKED
from inngest_mw_dev.queries import RefError, RunFilter, resolve_run_id, running_ids
from inngest_mw_dev.store import RunRow, StepRow

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["Lineage", "RerunResult", "RunControl"]


@dataclass(frozen=True, slots=True)
class RerunResult:
    run_id: str
    replayed: list[str]  # step IDs copied from the original run


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a rerun came from: the original run, the step it restarted at, the copied steps."""

    source_run_id: str
    from_step: str | None
    replayed: list[str]


class RunControl:
    """Run-control operations over one started engine (the API's and so the CLI's and UI's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # events and invokes

    def send(self, body: object) -> list[str]:
        """Ingest one event or a list (validated like ``/e/{key}``); their IDs."""
        events = normalize_events(body, seed=None, now_ms=int(time.time() * 1000))
        self.engine.machine.ingest(events)
        self.engine.wake()
        return [e["id"] for e in events]

    def resolve_function(self, ref: str) -> str:
        """A registered function by full ID, by its ID within its app, or by its name."""
        functions = self.engine.machine.functions
        if ref in functions:
            return ref
        matches = sorted(
            fn_id for fn_id, fn in functions.items() if fn_id.endswith("-" + ref) or fn.name == ref
        )
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise RefError(400, f"function {ref} is ambiguous: {', '.join(matches)}")
        known = ", ".join(sorted(functions)) or "none are registered; sync an app first"
        raise RefError(404, f"no function {ref} (known: {known})")

    def invoke(self, fn_ref: str, data: object) -> tuple[str, str]:
        """Start a run of a function directly with ``data`` as its event data; (event, run) IDs."""
        if not isinstance(data, dict):
            raise RefError(400, "invoke data must be a JSON object")
        fn_id = self.resolve_function(fn_ref)
        now = time.time()
        event: dict[str, Any] = {
            "id": new_ulid(),
            "name": EV_INVOKED,
            "ts": int(now * 1000),
            "user": {},
            "data": {**data, "_inngest": {"fn_id": fn_id, "source": "run control"}},
        }
        store = self.engine.store

        def record_event(_run: RunRow) -> None:
            store.insert_event(event, now)

        run = self.engine.machine.create_run(fn_id, [event], note="invoked", prepare=record_event)
        if run is None:
            raise RefError(404, f"function {fn_id} is not registered")
        self.engine.wake()
        return event["id"], run.id

    # cancel

    def cancel(self, ref: str, reason: str = "cancelled by a user") -> str:
        run_id = resolve_run_id(self.engine.store, ref)
        if not self.engine.machine.cancel(run_id, reason):
            raise RefError(400, f"run {run_id} has already ended")
        self.engine.wake()
        return run_id

    def cancel_many(self, flt: RunFilter, reason: str = "cancelled in bulk") -> list[str]:
        """Cancel every running run of a function queued in the filter's time range."""
        if flt.function_id is not None:
            flt = RunFilter(
                function_id=self.resolve_function(flt.function_id), since=flt.since, until=flt.until
            )
        cancelled = [
            run_id
            for run_id in running_ids(self.engine.store, flt)
            if self.engine.machine.cancel(run_id, reason)
        ]
        self.engine.wake()
        return cancelled

    # rerun

    def _step(self, steps: list[StepRow], ref: str) -> StepRow:
        exact = [s for s in steps if ref in (s.hash, s.name)]
        if len(exact) == 1:
            return exact[0]
        by_prefix = [s for s in steps if s.hash.startswith(ref)]
        if len(exact) > 1 or len(by_prefix) > 1:
            raise RefError(400, f"step {ref} is ambiguous in this run; give its full ID")
        if by_prefix:
            return by_prefix[0]
        names = ", ".join(s.name for s in steps) or "the run has no steps"
        raise RefError(404, f"the run has no step {ref} (steps: {names})")

    def rerun(self, ref: str, from_step: str | None = None) -> RerunResult:
        store = self.engine.store
        source = store.get_run(resolve_run_id(store, ref))
        assert source is not None  # resolve_run_id found it
        seed: list[StepRow] = []
        chosen: StepRow | None = None
        if from_step is not None:
            steps = store.steps(source.id)
            chosen = self._step(steps, from_step)
            limit = chosen.seq if chosen.memoized and chosen.seq is not None else None
            seed = sorted(
                (
                    s
                    for s in steps
                    if s.memoized
                    and s.seq is not None
                    and s.hash != chosen.hash
                    and (limit is None or s.seq < limit)
                ),
                key=lambda s: s.seq or 0,
            )
        replayed = [s.hash for s in seed]

        def prepare(run: RunRow) -> None:
            now = time.time()
            for step in seed:
                store.memoize_step(
                    run.id,
                    step.hash,
                    step.memo,
                    name=step.name,
                    op=step.op,
                    status=step.status,
                    now=now,
                    started_at=now,
                )
            store.write(
                "INSERT INTO reruns VALUES (?,?,?,?)",
                run.id,
                source.id,
                chosen.hash if chosen else None,
                json.dumps(replayed),
            )

        note = f"rerun of {source.id}"
        if chosen is not None:
            note += f" from step {chosen.name} ({len(seed)} earlier step(s) replayed from memory)"
        run = self.engine.machine.create_run(
            source.function_id, source.events, note=note, prepare=prepare
        )
        if run is None:
            raise RefError(404, f"function {source.function_id} is no longer registered")
        self.engine.wake()
        return RerunResult(run.id, replayed)

    def lineage(self, run_id: str) -> Lineage | None:
        rows = self.engine.store.read("SELECT * FROM reruns WHERE run_id = ?", run_id)
        if not rows:
            return None
        row = rows[0]
        return Lineage(row["source_run_id"], row["from_step"], json.loads(row["replayed"]))

    def reruns_of(self, run_id: str) -> list[str]:
        rows = self.engine.store.read(
            "SELECT run_id FROM reruns WHERE source_run_id = ? ORDER BY run_id", run_id
        )
        return [str(r["run_id"]) for r in rows]
