"""The engine's store: WAL checkpoints on a thread of their own, and the apps it keeps in memory."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from inngest_mw_dev.store import AppRow, Store
from store_rows import running_run


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_engine_connection_never_checkpoints_a_thread_of_its_own_does(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    store = Store(path, exclusive=True)
    try:
        assert [tuple(r) for r in store.read("PRAGMA wal_autocheckpoint")] == [(0,)]
        checkpointer = store._checkpointer
        assert checkpointer is not None
        thread = checkpointer._thread
        assert thread.name == "inngest-mw-checkpoint"
        assert thread.is_alive()
        with store.tx():
            store.write("CREATE TABLE filler (n INTEGER, pad TEXT)")
            for n in range(2_000):
                store.write("INSERT INTO filler VALUES (?, ?)", n, "x" * 500)
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 0
        before = checkpointer.checkpoints
        _wait(lambda: checkpointer.checkpoints > before, "a checkpoint by the thread")
    finally:
        store.close()
    # The thread stopped first, so the engine's connection was the last one and removed the log.
    # (Other engines in this test process have checkpoint threads of their own: ask this one's.)
    assert not thread.is_alive()
    assert not path.with_name(path.name + "-wal").exists()
    reopened = Store(path)
    try:
        assert reopened.read("SELECT COUNT(*) AS n FROM filler")[0]["n"] == 2_000
    finally:
        reopened.close()


def test_a_non_exclusive_store_keeps_sqlite_checkpoints(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    try:
        assert store._checkpointer is None
        assert [tuple(r) for r in store.read("PRAGMA wal_autocheckpoint")] == [(1000,)]
    finally:
        store.close()


def test_apps_kept_in_memory_follow_writes_and_rollbacks(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    app = AppRow("app", "app", "http://127.0.0.1:1/api", "py", "asgi", "c", "s", 1.0)
    try:
        with store.tx():
            store.insert_run(running_run())
            store.upsert_app(app)
        assert store.get_app("app") == app
        try:
            with store.tx():
                assert store.get_run("run1") is not None
                store.update_run("run1", status="Completed")
                store.upsert_app(dataclasses.replace(app, url="http://127.0.0.1:3/api"))
                changed = store.get_app("app")
                assert changed is not None
                assert changed.url == "http://127.0.0.1:3/api"
                raise RuntimeError("abandon")
        except RuntimeError:
            pass
        run = store.get_run("run1")
        assert run is not None
        assert run.status == "Running"
        assert store.get_app("app") == app
        store.write("UPDATE apps SET url = ? WHERE id = ?", "http://127.0.0.1:2/api", "app")
        moved = store.get_app("app")
        assert moved is not None
        assert moved.url == "http://127.0.0.1:2/api"
    finally:
        store.close()
