"""The engine database's schema as an ordered list of migrations, recorded in ``user_version``.

``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``; ``migrate`` applies the missing
ones forward at start-up, all in one transaction with the new version number, so a crash half-way
leaves the database at its old version and the next start does the same work again. A database
from a newer engine (a version above ``SCHEMA_VERSION``) is refused rather than misread.

Version 1 is the schema of the releases before versioning (``user_version`` 0): every statement
is ``IF NOT EXISTS``, so an unversioned database of any earlier release, whichever of these tables
it already has, is adopted as it is. Later migrations are plain steps (``ALTER TABLE ...``): append
one, never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inngest_mw_dev.dbfile import unusable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate", "schema_version"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step forward: ``script`` is ``;``-separated DDL (no ``;`` inside literals)."""

    summary: str
    script: str

    def statements(self) -> list[str]:
        return [s.strip() for s in self.script.split(";") if s.strip()]


_UNVERSIONED = """
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, url TEXT NOT NULL, sdk TEXT NOT NULL,
    framework TEXT NOT NULL, checksum TEXT NOT NULL, sync_id TEXT NOT NULL, synced_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS functions (
    id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, function_id TEXT NOT NULL, app_id TEXT NOT NULL, event_id TEXT NOT NULL,
    events TEXT NOT NULL, status TEXT NOT NULL, output TEXT, error TEXT,
    queued_at REAL NOT NULL, started_at REAL, ended_at REAL,
    force_plan INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL, correlation_id TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_event ON runs (event_id);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (queued_at);
CREATE INDEX IF NOT EXISTS runs_by_function ON runs (function_id, queued_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, queued_at);
CREATE INDEX IF NOT EXISTS events_by_time ON events (received_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, hash TEXT NOT NULL, name TEXT NOT NULL, op TEXT NOT NULL,
    status TEXT NOT NULL, memo TEXT, error TEXT, seq INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL, ended_at REAL, PRIMARY KEY (run_id, hash)
);
CREATE TABLE IF NOT EXISTS pauses (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT, kind TEXT NOT NULL,
    event_name TEXT NOT NULL, expression TEXT, correlation_id TEXT, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pauses_by_event ON pauses (event_name);
CREATE INDEX IF NOT EXISTS pauses_by_run ON pauses (run_id);
CREATE INDEX IF NOT EXISTS pauses_by_correlation ON pauses (correlation_id);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, run_id TEXT, function_id TEXT,
    step TEXT, attempt INTEGER NOT NULL DEFAULT 0, run_at REAL NOT NULL, lease_until REAL,
    payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS queue_by_time ON queue (run_at);
CREATE INDEX IF NOT EXISTS queue_by_run ON queue (run_id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
    kind TEXT NOT NULL, step TEXT, detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_by_run ON history (run_id);
CREATE TABLE IF NOT EXISTS flow_tat (key TEXT PRIMARY KEY, tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS run_keys (
    run_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, lim INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, kind, key)
);
CREATE INDEX IF NOT EXISTS run_keys_by_key ON run_keys (kind, key);
CREATE TABLE IF NOT EXISTS buffers (
    function_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, events TEXT NOT NULL,
    first_at REAL NOT NULL, item_id INTEGER NOT NULL, PRIMARY KEY (function_id, kind, key)
);
CREATE TABLE IF NOT EXISTS app_syncs (
    url TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT, app_name TEXT, functions INTEGER,
    attempted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reruns (
    run_id TEXT PRIMARY KEY, source_run_id TEXT NOT NULL, from_step TEXT, replayed TEXT NOT NULL
)
"""

_REQUEST_HOOKS = """
CREATE TABLE request_hooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, started_at REAL NOT NULL,
    step TEXT NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL, calls TEXT NOT NULL,
    more INTEGER NOT NULL DEFAULT 0, problem TEXT
);
CREATE INDEX request_hooks_by_run ON request_hooks (run_id)
"""

_V1_APIS = """
CREATE TABLE run_metadata (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
    scope TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL, op TEXT NOT NULL,
    vals TEXT NOT NULL, size INTEGER NOT NULL, via TEXT NOT NULL
);
CREATE INDEX run_metadata_by_run ON run_metadata (run_id);
CREATE TABLE user_spans (
    run_id TEXT NOT NULL, span_id TEXT NOT NULL, trace_id TEXT NOT NULL, parent_id TEXT,
    name TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL, step TEXT, scope TEXT NOT NULL, service TEXT NOT NULL,
    attributes TEXT NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (run_id, span_id)
);
CREATE TABLE cancellations (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, app_id TEXT NOT NULL,
    function_id TEXT NOT NULL, function_slug TEXT NOT NULL, started_after REAL,
    started_before REAL NOT NULL, expression TEXT, cancelled TEXT NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration("the schema of the releases before versioning, adopted as version 1", _UNVERSIONED),
    Migration("the middleware hooks each call request ran, per attempt", _REQUEST_HOOKS),
    Migration("run metadata, userland trace spans and bulk cancellations (the v1 APIs)", _V1_APIS),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path, steps: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring ``db`` to ``len(steps)``; return the version it had. Refuses a newer database."""
    known = len(steps)
    db.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(db)
        if found > known:
            raise unusable(
                path,
                f"it was written by a newer inngest-mw (schema version {found}; this engine"
                f" knows versions up to {known})",
                "upgrade inngest-mw or pick another --db",
            )
        for step in steps[found:]:
            for statement in step.statements():
                db.execute(statement)
        if found < known:
            db.execute(f"PRAGMA user_version = {known}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found
