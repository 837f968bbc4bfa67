"""The running runs the store keeps in memory: while there is room, and never one pushed out for
another (under a backlog runs take turns, so a run read back would push out one about to be
called again); a kept run leaves when it ends, and a run that ends makes room."""

from __future__ import annotations

from pathlib import Path

import pytest
from inngest_mw_dev import store as store_module
from inngest_mw_dev.store import Store
from store_rows import running_run


def test_runs_are_kept_while_there_is_room_and_none_is_pushed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_RUNS_KEPT", 2)
    store = Store(tmp_path / "e.db")
    try:
        with store.tx():
            for run_id in ("r1", "r2", "r3"):
                store.insert_run(running_run(run_id))
        kept = {run_id: store.get_run(run_id) for run_id in ("r1", "r2")}
        for _ in range(2):  # reading r3 back, again and again, pushes neither out
            third = store.get_run("r3")
            assert third is not None
            assert third.id == "r3"
            assert third is not store.get_run("r3")
            assert all(store.get_run(run_id) is run for run_id, run in kept.items())
        with store.tx():
            store.update_run("r1", status="Completed")
        assert store.get_run("r1") is not kept["r1"]
        third = store.get_run("r3")  # now there is room
        assert third is store.get_run("r3")
    finally:
        store.close()
