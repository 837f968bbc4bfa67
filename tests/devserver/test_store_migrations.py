"""Schema versions: an unversioned database of an earlier release is migrated forward and read
back right; a newer one is refused; each migration step commits with its version or not at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import inngest
import pytest
from engine_support import (
    dev_client,
    free_port,
    get_json,
    get_run,
    run_for_event,
    send,
    serve_functions,
    sync,
)
from inngest_mw_dev import EngineThread
from inngest_mw_dev.dbfile import UnusableDatabaseError
from inngest_mw_dev.migrations import SCHEMA_VERSION, Migration, migrate, schema_version
from inngest_mw_dev.store import Store

# The schema of the first release (commit 0710028, devserver/inngest_mw_dev/store.py): no
# flow-control tables, no sync log, no rerun lineage, no UI indexes, no user_version.
_FIRST_RELEASE = """
CREATE TABLE apps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, url TEXT NOT NULL, sdk TEXT NOT NULL,
    framework TEXT NOT NULL, checksum TEXT NOT NULL, sync_id TEXT NOT NULL, synced_at REAL NOT NULL
);
CREATE TABLE functions (
    id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL
);
CREATE TABLE events (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, function_id TEXT NOT NULL, app_id TEXT NOT NULL, event_id TEXT NOT NULL,
    events TEXT NOT NULL, status TEXT NOT NULL, output TEXT, error TEXT,
    queued_at REAL NOT NULL, started_at REAL, ended_at REAL,
    force_plan INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL, correlation_id TEXT
);
CREATE INDEX runs_by_event ON runs (event_id);
CREATE INDEX runs_by_time ON runs (queued_at);
CREATE TABLE steps (
    run_id TEXT NOT NULL, hash TEXT NOT NULL, name TEXT NOT NULL, op TEXT NOT NULL,
    status TEXT NOT NULL, memo TEXT, error TEXT, seq INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL, ended_at REAL, PRIMARY KEY (run_id, hash)
);
CREATE TABLE pauses (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT, kind TEXT NOT NULL,
    event_name TEXT NOT NULL, expression TEXT, correlation_id TEXT, expires_at REAL NOT NULL
);
CREATE INDEX pauses_by_event ON pauses (event_name);
CREATE INDEX pauses_by_run ON pauses (run_id);
CREATE INDEX pauses_by_correlation ON pauses (correlation_id);
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, run_id TEXT, function_id TEXT,
    step TEXT, attempt INTEGER NOT NULL DEFAULT 0, run_at REAL NOT NULL, lease_until REAL,
    payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX queue_by_time ON queue (run_at);
CREATE INDEX queue_by_run ON queue (run_id);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
    kind TEXT NOT NULL, step TEXT, detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX history_by_run ON history (run_id);
"""
_FIRST_TABLES = ["apps", "functions", "events", "runs", "steps", "pauses", "queue", "history"]


def _tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def _version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def _first_release_copy(source: Path, target: Path) -> None:
    """``target``: the first release's schema holding every row of ``source`` it has room for."""
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.executescript(_FIRST_RELEASE)
        db.execute("ATTACH DATABASE ? AS src", (str(source),))
        for table in _FIRST_TABLES:
            db.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
        db.execute("DETACH DATABASE src")
    finally:
        db.close()


def test_a_first_release_database_is_migrated_read_back_and_runs_new_work(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = dev_client("migrated", url)

    @client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="old/greet"))
    async def greet(ctx: inngest.Context) -> str:
        name: str = await ctx.step.run("name", lambda: str(ctx.event.data["who"]))  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        return await ctx.step.run("greeting", lambda: f"hello {name}")  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too

    source, old = tmp_path / "source.db", tmp_path / "old.db"
    with serve_functions(client, [greet]) as app:
        with EngineThread(source, port=port, retry_base=0.05, tick=0.02):
            sync(app)
            (event_id,) = send(url, {"name": "old/greet", "data": {"who": "ada"}})
            before = run_for_event(url, event_id)
            event_before = get_json(f"{url}/v1/events/{event_id}")["data"]
        assert before["status"] == "Completed"
        _first_release_copy(source, old)
        assert _version(old) == 0
        assert "flow_tat" not in _tables(old)

        with EngineThread(old, port=port, retry_base=0.05, tick=0.02):
            assert _version(old) == SCHEMA_VERSION
            assert {"flow_tat", "run_keys", "buffers", "app_syncs", "reruns"} <= _tables(old)
            after = get_run(url, before["run_id"])
            assert after == before
            assert get_json(f"{url}/v1/events/{event_id}")["data"] == event_before
            # The function and its app come from the migrated rows: no new sync is needed.
            (new_id,) = send(url, {"name": "old/greet", "data": {"who": "grace"}})
            fresh = run_for_event(url, new_id)
            assert fresh["status"] == "Completed"
            assert fresh["output"] == "hello grace"
            assert [s["name"] for s in fresh["steps"]] == ["name", "greeting"]


def test_a_database_of_a_newer_engine_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE from_the_future (x)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    db.close()
    with pytest.raises(UnusableDatabaseError) as refused:
        Store(path)
    assert str(refused.value) == (
        f"cannot use {path} as the engine database: it was written by a newer inngest-mw (schema"
        f" version {SCHEMA_VERSION + 3}; this engine knows versions up to {SCHEMA_VERSION});"
        " upgrade inngest-mw or pick another --db"
    )
    assert _version(path) == SCHEMA_VERSION + 3
    assert _tables(path) == {"from_the_future"}


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


_STEPS = [
    Migration("one", "CREATE TABLE a (x); INSERT INTO a VALUES (1)"),
    Migration("two", "ALTER TABLE a ADD COLUMN y TEXT DEFAULT 'two'"),
    Migration("three", "CREATE TABLE c (z); INSERT INTO c SELECT y FROM a"),
]


def test_migrations_apply_in_order_from_the_recorded_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = _connect(path)
    assert migrate(db, path, _STEPS[:1]) == 0
    assert schema_version(db) == 1
    assert migrate(db, path, _STEPS) == 1
    assert schema_version(db) == 3
    rows: list[Any] = db.execute("SELECT x, y FROM a").fetchall()
    assert rows == [(1, "two")]
    assert db.execute("SELECT z FROM c").fetchall() == [("two",)]
    assert migrate(db, path, _STEPS) == 3  # nothing left to do
    db.close()


def test_a_failing_migration_leaves_the_database_at_its_old_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = _connect(path)
    migrate(db, path, _STEPS[:1])
    broken = [
        *_STEPS[:2],
        Migration("broken", "CREATE TABLE d (w); INSERT INTO nowhere VALUES (1)"),
    ]
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        migrate(db, path, broken)
    assert schema_version(db) == 1
    columns = [r[1] for r in db.execute("PRAGMA table_info(a)")]
    assert columns == ["x"]  # step two rolled back with the step that failed after it
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'd'").fetchall() == []
    db.close()


def test_the_schema_version_is_recorded_in_a_new_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    store.close()
    assert _version(tmp_path / "engine.db") == SCHEMA_VERSION
