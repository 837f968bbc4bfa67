"""SQLite persistence for the engine: apps, functions, events, runs, steps, pauses, queue, history.

Flow control keeps its state here too (GCRA arrival times, per-run concurrency/singleton keys,
debounce and batch buffers), so limits and pending batches survive a restart.

One file in WAL mode: ``dbfile`` opens and checks it, ``migrations`` declares its schema (the
modules that keep their own tables, run control and the sync log, included). Callers group
writes with ``Store.tx()`` so a step's output and the queue items that follow from it commit
together; a ``kill -9`` then loses nothing that was acknowledged.
A store is used by the thread that opened it (sqlite3's ``check_same_thread``): the engine's is
opened and used on its store thread (``storethread``), so one connection suffices; only WAL
checkpoints run on a thread (and connection) of their own (``checkpointer``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inngest_mw_dev.canonical import canonical_text, utf8_len
from inngest_mw_dev.checkpointer import Checkpointer
from inngest_mw_dev.dbfile import check_path, open_database, unusable
from inngest_mw_dev.dblock import DatabaseLock
from inngest_mw_dev.migrations import migrate

__all__ = [
    "AppRow",
    "BufferRow",
    "HistoryRow",
    "PauseRow",
    "QueueItem",
    "RequestHooksRow",
    "RunRow",
    "StepRow",
    "Store",
]


# Rows per multi-row INSERT: well under SQLite's 32,766 bound variables at 5 per row.
_BULK_ROWS = 1_000
# Running runs whose row and step memos are kept in memory (see ``_RunState``): more than a
# five-step workload of 300 runs keeps in flight; a backlog beyond it is read back as it is run.
_RUNS_KEPT = 512
# Events stored to be processed whose bodies are kept until then (see ``get_event``).
_EVENTS_KEPT = 512


# One encoder for every write (``json.dumps`` with options builds a new one per call).
_dump: Callable[[object], str] = json.JSONEncoder(separators=(",", ":")).encode


def _load(text: str | None) -> Any:
    return None if text is None or text == "null" else json.loads(text)


@dataclass(slots=True)
class AppRow:
    id: str
    name: str
    url: str
    sdk: str
    framework: str
    checksum: str
    sync_id: str
    synced_at: float


@dataclass(slots=True)
class RunRow:
    id: str
    function_id: str
    app_id: str
    event_id: str
    events: list[dict[str, Any]]
    status: str
    output: Any
    error: Any
    queued_at: float
    started_at: float | None
    ended_at: float | None
    force_plan: bool
    pending: int
    max_attempts: int
    correlation_id: str | None
    events_json: str = field(default="", compare=False, repr=False)
    """``events`` as stored (canonical JSON for runs created since it is so): call bodies splice
    it in rather than encoding the events again on every call."""


@dataclass(slots=True)
class _RunState:
    """What the store keeps in memory of a running run, so a call request and the answer to it
    read nothing back: its row, and (once asked for) its memos and step IDs. Every write to the
    run and its steps goes through the store, which updates this as it writes."""

    run: RunRow
    memos: list[tuple[str, str]] | None = None
    """``(hash, memo as stored JSON)`` of the memoized steps, in completion order."""
    memo_bytes: int = 0
    hashes: set[str] | None = None
    """The IDs of every step the run has reported so far."""


@dataclass(slots=True)
class StepRow:
    run_id: str
    hash: str
    name: str
    op: str
    status: str
    memo: Any
    memoized: bool
    error: Any
    seq: int | None
    attempts: int
    started_at: float | None
    ended_at: float | None


@dataclass(slots=True)
class PauseRow:
    id: str
    run_id: str
    step: str | None
    kind: str
    event_name: str
    expression: str | None
    correlation_id: str | None
    expires_at: float


@dataclass(slots=True)
class QueueItem:
    """A unit of work; ``kind`` is a ``kinds.QueueKind`` value (cron, debounce and batch items
    are function-bound, with ``run_id`` None).

    ``function_id`` is kept on every item bound to a function, so timers and cron ticks know
    which function they belong to.
    """

    id: int
    kind: str
    run_id: str | None
    function_id: str | None
    step: str | None
    attempt: int
    run_at: float
    payload: dict[str, Any]


@dataclass(slots=True)
class BufferRow:
    """Events held back by debounce (the last one) or batching (all, in arrival order)."""

    function_id: str
    kind: str
    key: str
    events: list[str]
    first_at: float
    item_id: int


@dataclass(frozen=True, slots=True)
class RequestHooksRow:
    """The middleware hooks one call request ran (``inngest_mw.hooktrace``), as stored."""

    run_id: str
    started_at: float
    step: str
    attempt: int
    outcome: str
    calls: list[dict[str, Any]]
    more: int
    problem: str | None


@dataclass(slots=True)
class HistoryRow:
    id: int
    run_id: str
    ts: float
    kind: str
    step: str | None
    detail: dict[str, Any]


class Store:
    """Typed queries over the engine database; ``tx()`` makes a group of writes atomic."""

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        """Open (or create) the database and migrate it to the current schema.

        With ``exclusive`` (the engine), first take the database's lock (``dblock``), held until
        ``close``: a second engine on the same file is refused. Raises ``UnusableDatabaseError``
        with a sentence for a file the engine cannot work with.
        """
        self.path = Path(path)
        self._lock: DatabaseLock | None = None
        self._checkpointer: Checkpointer | None = None
        if str(path) != ":memory:":
            check_path(self.path)
            if exclusive:
                self._lock = DatabaseLock(self.path)
                self._lock.acquire()
        try:
            self._db = open_database(self.path)
        except BaseException:
            self._release()
            raise
        try:
            migrate(self._db, self.path)
        except sqlite3.Error as exc:
            self.close()
            raise unusable(
                self.path,
                f"its schema cannot be brought up to date ({exc})",
                "restore it from a backup or pick another --db",
            ) from None
        except BaseException:
            self.close()
            raise
        if exclusive and str(path) != ":memory:":
            # The engine's own commits never run a checkpoint (see ``checkpointer``).
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = Checkpointer(self.path).start()
        self._depth = 0
        self._apps: dict[str, AppRow] = {}
        """Apps by id; changed only through ``upsert_app`` (or a free-form ``write``)."""
        self._runs: dict[str, _RunState] = {}
        """Running runs by id (at most ``_RUNS_KEPT``: a new run or one read back while there is
        room, until it ends); like ``_apps``, forgotten on a rollback or a free-form ``write``."""
        self._pauses: bool | None = None
        """Whether the pauses table may hold a row (None: not known, ask it). Most functions
        never pause, and then every event and every run's end skips a statement on that table."""
        self._keys: bool | None = None
        """The same for the run_keys table (flow-control keys)."""
        self._events: dict[str, str] = {}
        """Bodies (stored JSON) of events stored and queued for processing, until the processing
        reads them (at most ``_EVENTS_KEPT``, kept while there is room); forgotten with runs."""
        self._history: list[tuple[str, float, str, str | None, str]] = []
        """History rows of the open transaction, inserted together just before it commits."""
        self._requeued: dict[int, float] = {}
        """Queue items ``requeue`` made due again in the open transaction (ID: when), written
        in one statement before any other statement runs (see ``requeue``)."""

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def close(self) -> None:
        try:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            self._db.close()
        finally:
            self._release()  # whatever closing raised: the next engine may take the file

    @contextmanager
    def tx(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self._write_history()
            self._write_requeued()
        except BaseException:
            self._depth = 0
            self._history.clear()
            self._requeued.clear()
            self._forget()
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    def _run_sql(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        """Every statement but a memo's ``INSERT`` goes through here: the items requeued so far
        are written first, so no statement ever sees the queue without them."""
        if self._requeued:
            self._write_requeued()
        return self._db.execute(sql, args)

    def _one(self, sql: str, *args: object) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._run_sql(sql, args).fetchone()
        return row

    def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        return self._run_sql(sql, args).fetchall()

    def _exec(self, sql: str, *args: object) -> int:
        return self._run_sql(sql, args).rowcount

    def read(self, sql: str, *args: object) -> list[sqlite3.Row]:
        """Rows of a read-only query, for modules that keep their own queries (UI, run control)."""
        self._write_history()
        return self._all(sql, *args)

    def write(self, sql: str, *args: object) -> int:
        """Run one statement (DDL or a write) for modules that keep their own tables."""
        self._write_history()
        self._forget()
        return self._exec(sql, *args)

    def _forget(self) -> None:
        """Drop what is kept in memory: the database may now say otherwise."""
        self._apps.clear()
        self._runs.clear()
        self._events.clear()
        self._pauses = self._keys = None

    def may_hold_pauses(self) -> bool:
        """Whether any pause (a wait, cancellation or invoke) may be stored."""
        return self._may_hold("pauses")

    def _may_hold(self, table: str) -> bool:
        """Whether ``pauses`` or ``run_keys`` may hold a row: known, or asked once."""
        known = self._pauses if table == "pauses" else self._keys
        if known is None:
            known = self._one(f"SELECT 1 FROM {table} LIMIT 1") is not None
            if table == "pauses":
                self._pauses = known
            else:
                self._keys = known
        return known

    def _keep(self, run: RunRow) -> _RunState | None:
        """Keep a running run in memory while there is room (None when there is not).

        Nothing kept is pushed out for another: under a backlog, runs take turns at the workers,
        so the run just read would only push out one about to be called again (and every run
        would be read back at each call); the runs kept stay kept until they end."""
        if len(self._runs) >= _RUNS_KEPT:
            return None
        state = self._runs[run.id] = _RunState(run)
        return state

    # apps and functions

    def get_app(self, app_id: str) -> AppRow | None:
        """The app (the object kept in memory: read it, do not change it)."""
        app = self._apps.get(app_id)
        if app is None:
            row = self._one("SELECT * FROM apps WHERE id = ?", app_id)
            if row is None:
                return None
            app = self._apps[app_id] = AppRow(**dict(row))
        return app

    def list_apps(self) -> list[AppRow]:
        return [AppRow(**dict(r)) for r in self._all("SELECT * FROM apps ORDER BY name")]

    def upsert_app(self, app: AppRow) -> None:
        self._apps.pop(app.id, None)
        self._exec(
            "INSERT INTO apps VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
            "name=excluded.name, url=excluded.url, sdk=excluded.sdk, framework=excluded.framework,"
            " checksum=excluded.checksum, sync_id=excluded.sync_id, synced_at=excluded.synced_at",
            app.id,
            app.name,
            app.url,
            app.sdk,
            app.framework,
            app.checksum,
            app.sync_id,
            app.synced_at,
        )

    def upsert_function(
        self, fn_id: str, app_id: str, name: str, config: object, now: float
    ) -> None:
        self._exec(
            "INSERT INTO functions VALUES (?,?,?,?,0,?) ON CONFLICT (id) DO UPDATE SET "
            "app_id=excluded.app_id, name=excluded.name, config=excluded.config, archived=0,"
            " updated_at=excluded.updated_at",
            fn_id,
            app_id,
            name,
            _dump(config),
            now,
        )

    def archive_functions(self, app_id: str, keep: list[str], now: float) -> list[str]:
        """Archive the app's functions not in ``keep``; return their IDs."""
        rows = self._all("SELECT id FROM functions WHERE app_id = ? AND archived = 0", app_id)
        gone = [r["id"] for r in rows if r["id"] not in keep]
        for fn_id in gone:
            self._exec("UPDATE functions SET archived = 1, updated_at = ? WHERE id = ?", now, fn_id)
        return gone

    def active_functions(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(id, app_id, config)`` of every function that is not archived."""
        rows = self._all("SELECT id, app_id, config FROM functions WHERE archived = 0")
        return [(r["id"], r["app_id"], json.loads(r["config"])) for r in rows]

    # events

    def insert_event(self, event: dict[str, Any], now: float, *, to_process: bool = True) -> bool:
        """Store an event; False when its ID was seen before (event idempotency). One
        ``to_process`` is kept in memory for the processing to read (``get_event``)."""
        body = _dump(event)
        fresh = (
            self._exec(
                "INSERT OR IGNORE INTO events VALUES (?,?,?,?)",
                event["id"],
                event["name"],
                body,
                now,
            )
            == 1
        )
        if fresh and to_process:
            self._keep_event(event["id"], body)
        return fresh

    def _keep_event(self, event_id: str, body: str) -> None:
        if len(self._events) < _EVENTS_KEPT:
            self._events[event_id] = body

    def insert_events(self, events: list[dict[str, Any]], now: float) -> list[str]:
        """Store events in bulk and queue an ``event`` item for each new one (in their order).

        Returns the IDs that were new: an ID seen before, in the store or earlier in the list,
        is stored and queued once (event idempotency). A few statements per chunk of events
        rather than two per event, so accepting a batch costs little time on the engine's loop.
        """
        fresh: list[str] = []
        for start in range(0, len(events), _BULK_ROWS):
            chunk = events[start : start + _BULK_ROWS]
            marks = ",".join("(?,?,?,?)" for _ in chunk)
            bodies = [_dump(e) for e in chunk]
            args = [
                v for e, b in zip(chunk, bodies, strict=True) for v in (e["id"], e["name"], b, now)
            ]
            rows = self._all(f"INSERT OR IGNORE INTO events VALUES {marks} RETURNING id", *args)
            inserted = {r[0] for r in rows}
            for event, body in zip(chunk, bodies, strict=True):
                if event["id"] in inserted:
                    inserted.discard(event["id"])
                    fresh.append(event["id"])
                    self._keep_event(event["id"], body)
        for start in range(0, len(fresh), _BULK_ROWS):
            chunk_ids = fresh[start : start + _BULK_ROWS]
            marks = ",".join("('event',?,?)" for _ in chunk_ids)
            args = [v for i in chunk_ids for v in (now, _dump({"event_id": i}))]
            self._exec(f"INSERT INTO queue (kind, run_at, payload) VALUES {marks}", *args)
        return fresh

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """The event; one stored to be processed is read from memory the first time."""
        body = self._events.pop(event_id, None)
        if body is None:
            row = self._one("SELECT body FROM events WHERE id = ?", event_id)
            body = row["body"] if row else None
        return json.loads(body) if body is not None else None

    # runs

    def insert_run(self, run: RunRow) -> None:
        """Store a new run; a running one is kept in memory as ``run`` itself (see ``get_run``)."""
        run.events_json = canonical_text(run.events)
        self._exec(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            run.id,
            run.function_id,
            run.app_id,
            run.event_id,
            run.events_json,
            run.status,
            _dump(run.output),
            _dump(run.error),
            run.queued_at,
            run.started_at,
            run.ended_at,
            int(run.force_plan),
            run.pending,
            run.max_attempts,
            run.correlation_id,
        )
        if run.status == "Running":
            state = self._keep(run)
            if state is not None:
                state.memos, state.hashes = [], set()

    @staticmethod
    def _run(row: sqlite3.Row) -> RunRow:
        data = dict(row)
        data["events_json"] = data["events"]
        data["events"] = json.loads(data["events"])
        data["output"] = _load(data["output"])
        data["error"] = _load(data["error"])
        data["force_plan"] = bool(data["force_plan"])
        return RunRow(**data)

    def get_run(self, run_id: str) -> RunRow | None:
        """The run. A running run is the object kept in memory, which ``update_run`` and
        ``add_pending`` change as they write: change it only through them."""
        state = self._runs.get(run_id)
        if state is not None:
            return state.run
        row = self._one("SELECT * FROM runs WHERE id = ?", run_id)
        if row is None:
            return None
        run = self._run(row)
        if run.status == "Running":
            self._keep(run)
        return run

    def runs_for_event(self, event_id: str) -> list[RunRow]:
        rows = self._all("SELECT * FROM runs WHERE event_id = ? ORDER BY queued_at", event_id)
        return [self._run(r) for r in rows]

    def recent_runs(self, limit: int) -> list[RunRow]:
        rows = self._all("SELECT * FROM runs ORDER BY queued_at DESC, id DESC LIMIT ?", limit)
        return [self._run(r) for r in rows]

    def update_run(self, run_id: str, **fields: object) -> None:
        encoded = {
            k: (_dump(v) if k in ("output", "error") else int(v) if isinstance(v, bool) else v)
            for k, v in fields.items()
        }
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        self._exec(f"UPDATE runs SET {assignments} WHERE id = ?", *encoded.values(), run_id)
        state = self._runs.get(run_id)
        if state is not None:
            for name, value in fields.items():
                setattr(state.run, name, value)
            if state.run.status != "Running":
                del self._runs[run_id]

    def add_pending(self, run_id: str, delta: int) -> int:
        """Adjust the run's count of outstanding branches; return the new value (never < 0)."""
        row = self._one(
            "UPDATE runs SET pending = MAX(pending + ?, 0) WHERE id = ? RETURNING pending",
            delta,
            run_id,
        )
        pending = int(row["pending"]) if row else 0
        state = self._runs.get(run_id)
        if state is not None:
            state.run.pending = pending
        return pending

    # steps

    @staticmethod
    def _step(row: sqlite3.Row) -> StepRow:
        data = dict(row)
        data["memoized"] = data["memo"] is not None
        data["memo"] = _load(data["memo"])
        data["error"] = _load(data["error"])
        return StepRow(**data)

    def get_step(self, run_id: str, step_hash: str) -> StepRow | None:
        state = self._runs.get(run_id)
        if state is not None and state.hashes is not None and step_hash not in state.hashes:
            return None
        row = self._one("SELECT * FROM steps WHERE run_id = ? AND hash = ?", run_id, step_hash)
        return self._step(row) if row else None

    def steps(self, run_id: str) -> list[StepRow]:
        rows = self._all(
            "SELECT * FROM steps WHERE run_id = ? ORDER BY COALESCE(started_at, 0), rowid",
            run_id,
        )
        return [self._step(r) for r in rows]

    def step_hashes(self, run_id: str) -> set[str]:
        """The IDs of every step the run has reported so far."""
        state = self._runs.get(run_id)
        if state is not None and state.hashes is not None:
            return set(state.hashes)
        rows = self._run_sql("SELECT hash FROM steps WHERE run_id = ?", (run_id,)).fetchall()
        hashes = {r[0] for r in rows}
        if state is not None:
            state.hashes = set(hashes)
        return hashes

    def memo_bytes(self, run_id: str) -> int:
        """Total UTF-8 size of the run's stored step memos."""
        state = self._loaded(run_id)
        if state is not None:
            return state.memo_bytes
        row = self._one(
            "SELECT COALESCE(SUM(LENGTH(CAST(memo AS BLOB))), 0) AS n FROM steps WHERE run_id = ?",
            run_id,
        )
        return int(row["n"]) if row else 0

    def memos(self, run_id: str) -> tuple[dict[str, Any], list[str]]:
        """Memoized step state in completion order, and that order (the ``ctx.stack``)."""
        rows = self._all(
            "SELECT hash, memo FROM steps WHERE run_id = ? AND memo IS NOT NULL ORDER BY seq",
            run_id,
        )
        return {r["hash"]: json.loads(r["memo"]) for r in rows}, [r["hash"] for r in rows]

    def memo_texts(self, run_id: str) -> list[tuple[str, str]]:
        """``(hash, memo as stored JSON)`` of the memoized steps, in completion order."""
        state = self._loaded(run_id)
        if state is not None and state.memos is not None:
            return list(state.memos)
        return self._memo_rows(run_id)

    def _memo_rows(self, run_id: str) -> list[tuple[str, str]]:
        rows = self._run_sql(
            "SELECT hash, memo FROM steps WHERE run_id = ? AND memo IS NOT NULL ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def _loaded(self, run_id: str) -> _RunState | None:
        """The run's state kept in memory, its memos read in; None for a run not kept."""
        state = self._runs.get(run_id)
        if state is not None and state.memos is None:
            state.memos = self._memo_rows(run_id)
            state.memo_bytes = sum(utf8_len(text) for _, text in state.memos)
        return state

    def upsert_step(
        self,
        run_id: str,
        step_hash: str,
        *,
        name: str,
        op: str,
        status: str,
        now: float,
        attempts: int | None = None,
        error: object = None,
    ) -> None:
        """Record a step that is not finished yet (planned, running, sleeping, waiting...)."""
        self._exec(
            "INSERT INTO steps (run_id, hash, name, op, status, error, attempts, started_at)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id, hash) DO UPDATE SET"
            " op = excluded.op, status = excluded.status, error = excluded.error,"
            " attempts = MAX(steps.attempts, excluded.attempts)",
            run_id,
            step_hash,
            name,
            op,
            status,
            _dump(error) if error is not None else None,
            attempts or 0,
            now,
        )
        state = self._runs.get(run_id)
        if state is not None and state.hashes is not None:
            state.hashes.add(step_hash)

    def memoize_step(
        self,
        run_id: str,
        step_hash: str,
        memo: object,
        *,
        name: str,
        op: str,
        status: str,
        now: float,
        started_at: float | None = None,
        encoded: str | None = None,
    ) -> bool:
        """Save a step's final memo, appending it to the completion order.

        The memo is stored as canonical JSON (``encoded`` when the caller has it already), so call
        bodies can splice it in as it is. Returns False (and changes nothing) when the step already
        has a memo, so a duplicate response cannot overwrite or re-append it.
        """
        error = memo.get("error") if isinstance(memo, dict) and set(memo) == {"error"} else None
        text = canonical_text(memo) if encoded is None else encoded
        # Straight to the connection: it touches only ``steps``, so the items requeued before it
        # may wait, and the requeues of a tick's answers go out in one statement.
        saved = (
            self._db.execute(
                "INSERT INTO steps (run_id, hash, name, op, status, memo, error, seq, attempts,"
                " started_at, ended_at) VALUES (?,?,?,?,?,?,?,"
                " (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?), 1, ?, ?)"
                " ON CONFLICT (run_id, hash) DO UPDATE SET status = excluded.status,"
                " memo = excluded.memo, error = excluded.error, seq = excluded.seq,"
                " ended_at = excluded.ended_at, attempts = MAX(steps.attempts, 1)"
                " WHERE steps.memo IS NULL",
                (
                    run_id,
                    step_hash,
                    name,
                    op,
                    status,
                    text,
                    _dump(error) if error is not None else None,
                    run_id,
                    started_at or now,
                    now,
                ),
            ).rowcount
            == 1
        )
        state = self._runs.get(run_id)
        if saved and state is not None:
            if state.hashes is not None:
                state.hashes.add(step_hash)
            if state.memos is not None:
                state.memos.append((step_hash, text))
                state.memo_bytes += utf8_len(text)
        return saved

    # pauses

    def insert_pause(self, pause: PauseRow) -> None:
        self._pauses = True
        self._exec(
            "INSERT OR REPLACE INTO pauses VALUES (?,?,?,?,?,?,?,?)",
            pause.id,
            pause.run_id,
            pause.step,
            pause.kind,
            pause.event_name,
            pause.expression,
            pause.correlation_id,
            pause.expires_at,
        )

    def pauses_for_event(self, event_name: str, now: float) -> list[PauseRow]:
        if not self._may_hold("pauses"):
            return []
        rows = self._all(
            "SELECT * FROM pauses WHERE event_name = ? AND expires_at > ? ORDER BY rowid",
            event_name,
            now,
        )
        return [PauseRow(**dict(r)) for r in rows]

    def pauses_for_correlation(self, correlation_id: str) -> list[PauseRow]:
        if not self._may_hold("pauses"):
            return []
        rows = self._all("SELECT * FROM pauses WHERE correlation_id = ?", correlation_id)
        return [PauseRow(**dict(r)) for r in rows]

    def delete_pause(self, pause_id: str) -> bool:
        """Remove a pause; True only for the caller that actually consumed it."""
        if self._exec("DELETE FROM pauses WHERE id = ?", pause_id) != 1:
            return False
        self._pauses = None  # it may have been the last
        return True

    # queue

    def enqueue(
        self,
        kind: str,
        run_at: float,
        *,
        run_id: str | None = None,
        function_id: str | None = None,
        step: str | None = None,
        attempt: int = 0,
        payload: dict[str, Any] | None = None,
    ) -> int:
        cursor = self._run_sql(
            "INSERT INTO queue (kind, run_id, function_id, step, attempt, run_at, payload)"
            " VALUES (?,?,?,?,?,?,?)",
            (kind, run_id, function_id, step, attempt, run_at, _dump(payload or {})),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _item(row: sqlite3.Row) -> QueueItem:
        data = dict(row)
        data.pop("lease_until")
        data["payload"] = json.loads(data["payload"])
        return QueueItem(**data)

    def lease_due(
        self,
        now: float,
        lease_seconds: float,
        limit: int,
        admit: Callable[[QueueItem], bool] | None = None,
    ) -> list[QueueItem]:
        """Take up to ``limit`` due items whose lease is free or expired, leasing them.

        Items ``admit`` refuses stay queued and later due items are still considered, so work
        held by a flow-control limit never blocks unrelated work behind it.
        """
        taken: list[QueueItem] = []
        # Read due items a page at a time (keyset on run_at, id) rather than all of them: under
        # load thousands are due, and each lease used to fetch and decode every one. The first
        # page is what the lease may take; once ``admit`` has refused items, pages are larger.
        page = limit
        after: tuple[float, int] | None = None
        with self.tx():
            while len(taken) < limit:
                rows = self._all(
                    "SELECT * FROM queue WHERE run_at <= ? AND (lease_until IS NULL"
                    " OR lease_until < ?)"
                    + ("" if after is None else " AND (run_at > ? OR (run_at = ? AND id > ?))")
                    + " ORDER BY run_at, id"
                    " LIMIT ?",
                    now,
                    now,
                    *(() if after is None else (after[0], after[0], after[1])),
                    page,
                )
                for row in rows:
                    item = self._item(row)
                    if admit is not None and not admit(item):
                        continue
                    taken.append(item)
                    if len(taken) >= limit:
                        break
                if len(rows) < page:
                    break
                after = (rows[-1]["run_at"], rows[-1]["id"])
                page = max(limit, 64)
            if taken:
                marks = ",".join("?" * len(taken))
                self._exec(
                    f"UPDATE queue SET lease_until = ? WHERE id IN ({marks})",
                    now + lease_seconds,
                    *(item.id for item in taken),
                )
        return taken

    def next_due(self) -> float | None:
        row = self._one("SELECT MIN(run_at) AS t FROM queue WHERE lease_until IS NULL")
        return float(row["t"]) if row and row["t"] is not None else None

    def release_all_leases(self) -> int:
        """Free every lease: at start-up no item can still be executing in this engine."""
        with self.tx():
            return self._exec("UPDATE queue SET lease_until = NULL WHERE lease_until IS NOT NULL")

    def has_item(self, run_id: str, kind: str, step: str | None = None) -> bool:
        sql = "SELECT 1 FROM queue WHERE run_id = ? AND kind = ?"
        args: list[object] = [run_id, kind]
        if step is not None:
            sql += " AND step = ?"
            args.append(step)
        return self._one(sql, *args) is not None

    def get_item(self, item_id: int) -> QueueItem | None:
        row = self._one("SELECT * FROM queue WHERE id = ?", item_id)
        return self._item(row) if row else None

    def reschedule(self, item_id: int, run_at: float, attempt: int, **payload: Any) -> None:
        """Put an item back for a later try, with its lease released."""
        item = self.get_item(item_id)
        merged = {**(item.payload if item else {}), **payload}
        self._exec(
            "UPDATE queue SET run_at = ?, attempt = ?, lease_until = NULL, payload = ?"
            " WHERE id = ?",
            run_at,
            attempt,
            _dump(merged),
            item_id,
        )

    def requeue(self, item_id: int, run_at: float) -> None:
        """Reuse a leased item as a fresh one (attempt 0, empty payload, no lease) due at
        ``run_at``: cheaper than deleting it and inserting its successor.

        In a transaction the write waits for the next statement (or the commit), so the
        requeues of one tick's answers, each followed only by its memo's ``INSERT``, are one
        ``UPDATE``."""
        self._requeued[item_id] = run_at
        if not self._depth:
            self._write_requeued()

    def _write_requeued(self) -> None:
        pending, self._requeued = self._requeued, {}
        items = list(pending.items())
        for start in range(0, len(items), _BULK_ROWS):
            chunk = items[start : start + _BULK_ROWS]
            cases = " ".join("WHEN ? THEN ?" for _ in chunk)
            marks = ",".join("?" * len(chunk))
            self._db.execute(
                f"UPDATE queue SET run_at = CASE id {cases} END, attempt = 0, lease_until = NULL,"
                f" payload = '{{}}' WHERE id IN ({marks})",
                (*(v for pair in chunk for v in pair), *(item_id for item_id, _ in chunk)),
            )

    def delete_item(self, item_id: int) -> None:
        self._exec("DELETE FROM queue WHERE id = ?", item_id)

    def delete_run_work(self, run_id: str) -> None:
        """Drop every queued item, pause and flow-control key of a run that has ended."""
        self._runs.pop(run_id, None)
        self._exec("DELETE FROM queue WHERE run_id = ?", run_id)
        if self._may_hold("pauses") and self._exec("DELETE FROM pauses WHERE run_id = ?", run_id):
            self._pauses = None
        if self._may_hold("run_keys") and self._exec(
            "DELETE FROM run_keys WHERE run_id = ?", run_id
        ):
            self._keys = None

    def set_payload(self, item_id: int, **payload: Any) -> None:
        """Merge fields into an item's payload without touching its lease or time."""
        item = self.get_item(item_id)
        if item is not None:
            merged = _dump({**item.payload, **payload})
            self._exec("UPDATE queue SET payload = ? WHERE id = ?", merged, item_id)

    def delete_pause_items(self, run_id: str, step: str) -> None:
        self._exec(
            "DELETE FROM queue WHERE run_id = ? AND step = ? AND kind IN"
            " ('wait_timeout', 'invoke_timeout')",
            run_id,
            step,
        )

    def cron_items(self, function_id: str | None = None) -> list[QueueItem]:
        if function_id is None:
            rows = self._all("SELECT * FROM queue WHERE kind = 'cron'")
        else:
            rows = self._all(
                "SELECT * FROM queue WHERE kind = 'cron' AND function_id = ?", function_id
            )
        return [self._item(r) for r in rows]

    def queue_size(self) -> int:
        row = self._one("SELECT COUNT(*) AS n FROM queue")
        return int(row["n"]) if row else 0

    # flow control

    def get_tat(self, key: str) -> float | None:
        row = self._one("SELECT tat FROM flow_tat WHERE key = ?", key)
        return float(row["tat"]) if row else None

    def set_tat(self, key: str, tat: float) -> None:
        self._exec("INSERT OR REPLACE INTO flow_tat VALUES (?,?)", key, tat)

    def add_run_key(self, run_id: str, kind: str, key: str, limit: int = 0) -> None:
        self._keys = True
        self._exec("INSERT OR REPLACE INTO run_keys VALUES (?,?,?,?)", run_id, kind, key, limit)

    def run_keys(self, run_id: str, kind: str) -> list[tuple[str, int]]:
        if not self._may_hold("run_keys"):
            return []
        rows = self._all(
            "SELECT key, lim FROM run_keys WHERE run_id = ? AND kind = ?", run_id, kind
        )
        return [(r["key"], int(r["lim"])) for r in rows]

    def has_run_keys(self, kind: str) -> bool:
        """Whether any run holds a key of ``kind``."""
        if not self._may_hold("run_keys"):
            return False
        return self._one("SELECT 1 FROM run_keys WHERE kind = ? LIMIT 1", kind) is not None

    def runs_with_key(self, kind: str, key: str) -> list[str]:
        """IDs of running runs holding ``key`` (keys are removed when a run ends)."""
        if not self._may_hold("run_keys"):
            return []
        rows = self._all("SELECT run_id FROM run_keys WHERE kind = ? AND key = ?", kind, key)
        return [r["run_id"] for r in rows]

    def leased_calls_by_key(self, kind: str, now: float) -> dict[str, int]:
        """How many leased (in-flight) calls hold each key of ``kind``."""
        if not self._may_hold("run_keys"):
            return {}
        rows = self._all(
            "SELECT k.key AS key, COUNT(*) AS n FROM queue q JOIN run_keys k"
            " ON k.run_id = q.run_id AND k.kind = ? WHERE q.kind = 'call'"
            " AND q.lease_until IS NOT NULL AND q.lease_until >= ? GROUP BY k.key",
            kind,
            now,
        )
        return {r["key"]: int(r["n"]) for r in rows}

    def get_buffer(self, function_id: str, kind: str, key: str) -> BufferRow | None:
        row = self._one(
            "SELECT * FROM buffers WHERE function_id = ? AND kind = ? AND key = ?",
            function_id,
            kind,
            key,
        )
        if row is None:
            return None
        data = dict(row)
        data["events"] = json.loads(data["events"])
        return BufferRow(**data)

    def put_buffer(self, buffer: BufferRow) -> None:
        self._exec(
            "INSERT OR REPLACE INTO buffers VALUES (?,?,?,?,?,?)",
            buffer.function_id,
            buffer.kind,
            buffer.key,
            _dump(buffer.events),
            buffer.first_at,
            buffer.item_id,
        )

    def delete_buffer(self, function_id: str, kind: str, key: str) -> None:
        self._exec(
            "DELETE FROM buffers WHERE function_id = ? AND kind = ? AND key = ?",
            function_id,
            kind,
            key,
        )

    # history

    def add_history(
        self, run_id: str, ts: float, kind: str, step: str | None, detail: dict[str, Any]
    ) -> None:
        """Add a history row; in a transaction, with the transaction's others as it commits
        (one multi-row ``INSERT``), which every read of history here waits for."""
        self._history.append((run_id, ts, kind, step, _dump(detail)))
        if not self._depth:
            self._write_history()

    def _write_history(self) -> None:
        rows, self._history = self._history, []
        for start in range(0, len(rows), _BULK_ROWS):
            chunk = rows[start : start + _BULK_ROWS]
            marks = ",".join("(?,?,?,?,?)" for _ in chunk)
            self._exec(
                f"INSERT INTO history (run_id, ts, kind, step, detail) VALUES {marks}",
                *(v for row in chunk for v in row),
            )

    # middleware hooks per request

    def add_request_hooks(self, row: RequestHooksRow) -> None:
        self._run_sql(
            "INSERT INTO request_hooks (run_id, started_at, step, attempt, outcome, calls, more,"
            " problem) VALUES (?,?,?,?,?,?,?,?)",
            (
                row.run_id,
                row.started_at,
                row.step,
                row.attempt,
                row.outcome,
                _dump(row.calls),
                row.more,
                row.problem,
            ),
        )

    def request_hooks(self, run_id: str) -> list[RequestHooksRow]:
        """Every traced request of a run, in the order they were made."""
        rows = self._all("SELECT * FROM request_hooks WHERE run_id = ? ORDER BY id", run_id)
        return [
            RequestHooksRow(
                r["run_id"],
                r["started_at"],
                r["step"],
                r["attempt"],
                r["outcome"],
                json.loads(r["calls"]),
                r["more"],
                r["problem"],
            )
            for r in rows
        ]

    def history(self, run_id: str) -> list[HistoryRow]:
        self._write_history()
        rows = self._all("SELECT * FROM history WHERE run_id = ? ORDER BY id", run_id)
        return [
            HistoryRow(r["id"], r["run_id"], r["ts"], r["kind"], r["step"], json.loads(r["detail"]))
            for r in rows
        ]
