"""Running runs kept in memory by the store read back exactly as the database has them."""

from __future__ import annotations

from pathlib import Path

import pytest
from inngest_mw_dev import store as store_module
from inngest_mw_dev.store import RunRow, Store
from store_rows import running_run


def _run(run_id: str) -> RunRow:
    return running_run(run_id, events=[{"id": "ev1", "name": "a", "data": {"é": 1}}])


def _view(store: Store, run_id: str) -> tuple[object, ...]:
    run = store.get_run(run_id)
    assert run is not None
    return (
        run.status,
        run.pending,
        run.started_at,
        run.force_plan,
        run.events_json,
        store.memo_texts(run_id),
        store.memo_bytes(run_id),
        sorted(store.step_hashes(run_id)),
        store.get_step(run_id, "missing"),
    )


def test_a_kept_run_its_memos_and_steps_match_a_fresh_read(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    store = Store(path)
    try:
        with store.tx():
            store.insert_run(_run("run1"))
            store.memoize_step(
                "run1",
                "s1",
                {"data": "ü" * 3},
                name="s1",
                op="StepRun",
                status="Completed",
                now=2.0,
            )
            store.upsert_step("run1", "s2", name="s2", op="Sleep", status="Sleeping", now=2.0)
            store.update_run("run1", started_at=2.0, force_plan=True)
            assert store.add_pending("run1", 1) == 1
        try:
            with store.tx():
                store.memoize_step(
                    "run1", "s3", {"data": 3}, name="s3", op="StepRun", status="Completed", now=3.0
                )
                store.add_pending("run1", 4)
                raise RuntimeError("abandon")
        except RuntimeError:
            pass
        kept = _view(store, "run1")
    finally:
        store.close()
    fresh = Store(path)
    try:
        assert _view(fresh, "run1") == kept
        assert kept[1] == 1
        assert kept[5] == [("s1", '{"data":"üüü"}')]
        assert kept[6] == len('{"data":"üüü"}'.encode())
        assert kept[7] == ["s1", "s2"]
        with fresh.tx():
            fresh.update_run("run1", status="Completed", ended_at=4.0)
        run = fresh.get_run("run1")
        assert run is not None
        assert run.status == "Completed"
    finally:
        fresh.close()


def test_runs_beyond_the_kept_ones_are_read_back_and_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_RUNS_KEPT", 2)
    store = Store(tmp_path / "engine.db")
    try:
        with store.tx():
            for run_id in ("run1", "run2", "run3"):  # run3 arrives with no room left
                store.insert_run(_run(run_id))
            store.memoize_step(
                "run3", "s1", {"data": 1}, name="s1", op="StepRun", status="Completed", now=2.0
            )
            store.update_run("run3", started_at=2.0)
            assert store.add_pending("run3", 2) == 2
        views = {run_id: _view(store, run_id) for run_id in ("run1", "run2", "run3")}
        assert views["run3"][1:3] == (2, 2.0)
        assert views["run3"][5] == [("s1", '{"data":1}')]
        with store.tx():
            store.update_run("run1", pending=5)  # run1 was pushed out by the read of run3
    finally:
        store.close()
    fresh = Store(tmp_path / "engine.db")
    try:
        assert {run_id: _view(fresh, run_id) for run_id in ("run2", "run3")} == {
            run_id: views[run_id] for run_id in ("run2", "run3")
        }
        assert _view(fresh, "run1")[1] == 5
    finally:
        fresh.close()
