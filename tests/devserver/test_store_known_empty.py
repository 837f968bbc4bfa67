"""What the store knows without asking SQLite: that no pause or flow-control key exists, which
events are still to be processed, and the history of the transaction under way. Each answer
must be what a fresh read of the database gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inngest_mw_dev.executor import Completed
from inngest_mw_dev.kinds import QueueKind
from inngest_mw_dev.machine import RunMachine
from inngest_mw_dev.registration import parse_registration
from inngest_mw_dev.store import PauseRow, Store


def _abandoned(store: Store, action: Callable[[], object]) -> None:
    """Do ``action`` in a transaction that then rolls back."""
    with store.tx():
        action()
        raise RuntimeError("abandon")


def _pause(pause_id: str, event: str = "app/reply") -> PauseRow:
    return PauseRow(pause_id, "run1", "wait", "wait", event, None, None, 9e9)


def test_pauses_and_keys_are_found_however_they_were_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    try:
        assert store.pauses_for_event("app/reply", 0.0) == []
        assert not store.has_run_keys("concurrency")
        with store.tx():
            store.insert_pause(_pause("p1"))
            store.add_run_key("run1", "concurrency", "k", 1)
        assert [p.id for p in store.pauses_for_event("app/reply", 0.0)] == ["p1"]
        assert store.has_run_keys("concurrency")
        with store.tx():
            store.delete_run_work("run1")
        assert store.pauses_for_event("app/reply", 0.0) == []
        assert not store.has_run_keys("concurrency")
        # Written by a module with its own SQL, and by a transaction that rolls back.
        store.write(
            "INSERT INTO pauses VALUES ('p2','run2','s',?,'app/reply',NULL,NULL,9e9)", "wait"
        )
        store.write("INSERT INTO run_keys VALUES ('run2','concurrency','k',1)")
        assert [p.id for p in store.pauses_for_event("app/reply", 0.0)] == ["p2"]
        assert store.runs_with_key("concurrency", "k") == ["run2"]
        with pytest.raises(RuntimeError):
            _abandoned(store, lambda: store.delete_pause("p2"))
        assert [p.id for p in store.pauses_for_event("app/reply", 0.0)] == ["p2"]
    finally:
        store.close()


def test_an_event_to_process_reads_back_and_a_rolled_back_one_is_gone(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    try:
        event: dict[str, Any] = {"id": "e1", "name": "app/go", "data": {"é": 1}}
        with store.tx():
            assert store.insert_events([event], 1.0) == ["e1"]
        assert store.get_event("e1") == event
        assert store.get_event("e1") == event  # and again, from the database
        with pytest.raises(RuntimeError):
            _abandoned(
                store, lambda: store.insert_event({"id": "e2", "name": "a", "data": {}}, 2.0)
            )
        assert store.get_event("e2") is None
    finally:
        store.close()


def test_history_is_readable_inside_its_transaction_and_gone_with_a_rollback(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "engine.db")
    try:
        with store.tx():
            store.add_history("run1", 1.0, "queued", None, {"event": "app/go"})
            store.add_history("run1", 2.0, "started", None, {})
            assert [h.kind for h in store.history("run1")] == ["queued", "started"]
        with pytest.raises(RuntimeError):
            _abandoned(store, lambda: store.add_history("run1", 3.0, "completed", None, {}))
        store.add_history("run1", 4.0, "cancelled", None, {})  # no transaction: at once
        assert [(h.kind, h.ts) for h in store.history("run1")] == [
            ("queued", 1.0),
            ("started", 2.0),
            ("cancelled", 4.0),
        ]
    finally:
        store.close()


def _machine(tmp_path: Path, *triggers: str) -> RunMachine:
    machine = RunMachine(Store(tmp_path / "engine.db"), clock=lambda: 1_800_000_000.0)
    functions = [
        {
            "id": f"app-f{index}",
            "name": f"f{index}",
            "triggers": [{"event": trigger}],
            "steps": {"step": {"id": "step", "runtime": {"type": "http", "url": "http://x"}}},
        }
        for index, trigger in enumerate(triggers)
    ]
    machine.register(
        parse_registration(
            {"appName": "app", "url": "http://127.0.0.1:1/api", "functions": functions}
        )
    )
    return machine


def _finish_one_run(machine: RunMachine) -> list[str]:
    """Send app/go, run its run to completion; the names of the events queued afterwards."""
    machine.ingest([{"id": "e1", "name": "app/go", "data": {}, "user": {}, "ts": 0}])
    (event_item,) = machine.lease(1_800_000_000.0, 60, 10)
    machine.process_event(event_item)
    (call,) = machine.lease(1_800_000_000.0, 60, 10)
    assert machine.prepare_call(call) is not None
    machine.apply_outcome(call, Completed({"ok": True}), 1_800_000_000.0)
    queued = machine.lease(1_800_000_000.0, 60, 10)
    assert all(item.kind == QueueKind.EVENT for item in queued)
    names = [machine.store.get_event(str(item.payload["event_id"])) for item in queued]
    return [str(event["name"]) for event in names if event is not None]


@pytest.mark.parametrize(
    ("triggers", "queued"),
    [
        (("app/go",), []),  # nothing takes the finished event: stored, not processed
        (("app/go", "inngest/function.finished"), ["inngest/function.finished"]),
        (("app/go", "inngest/function.*"), ["inngest/function.finished"]),
    ],
)
def test_a_finished_event_is_processed_only_when_something_could_take_it(
    tmp_path: Path, triggers: tuple[str, ...], queued: list[str]
) -> None:
    machine = _machine(tmp_path, *triggers)
    try:
        assert _finish_one_run(machine) == queued
        stored = machine.store.read("SELECT name FROM events")
        assert sorted(row["name"] for row in stored) == ["app/go", "inngest/function.finished"]
    finally:
        machine.store.close()


def test_a_finished_event_is_processed_while_a_pause_may_wait_for_it(tmp_path: Path) -> None:
    machine = _machine(tmp_path, "app/go")
    try:
        with machine.store.tx():
            machine.store.insert_pause(_pause("p1", "inngest/function.finished"))
        assert _finish_one_run(machine) == ["inngest/function.finished"]
    finally:
        machine.store.close()
