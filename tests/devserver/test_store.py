"""Store and queue edge cases: leases, recovery, idempotent events, memo ordering, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from inngest_mw_dev.store import RunRow, Store
from store_rows import running_run


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db" / "engine.db")


def make_run(store: Store, run_id: str = "run1") -> RunRow:
    run = running_run(run_id)
    with store.tx():
        store.insert_run(run)
    return run


def test_a_leased_item_is_not_leased_again_until_its_lease_expires(store: Store) -> None:
    with store.tx():
        item_id = store.enqueue("call", 10.0, run_id="r", step="step")
    assert store.lease_due(9.0, 30, 10) == []
    (item,) = store.lease_due(10.0, 30, 10)
    assert item.id == item_id
    assert store.lease_due(20.0, 30, 10) == []
    (again,) = store.lease_due(41.0, 30, 10)
    assert again.id == item_id


def test_restart_releases_leases_of_items_that_were_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    first = Store(path)
    with first.tx():
        first.enqueue("sleep", 1.0, run_id="r", step="h")
    assert len(first.lease_due(1.0, 3600, 10)) == 1
    first.close()
    second = Store(path)
    assert second.lease_due(2.0, 3600, 10) == []
    assert second.release_all_leases() == 1
    assert len(second.lease_due(2.0, 3600, 10)) == 1


def test_due_items_come_in_time_order_up_to_the_limit(store: Store) -> None:
    with store.tx():
        late = store.enqueue("event", 5.0)
        early = store.enqueue("event", 1.0)
        store.enqueue("event", 9.0)
    assert [i.id for i in store.lease_due(6.0, 30, 10)] == [early, late]
    assert store.next_due() == 9.0


def test_reschedule_releases_the_lease_and_merges_payload(store: Store) -> None:
    with store.tx():
        item_id = store.enqueue("call", 1.0, payload={"a": 1})
    store.lease_due(1.0, 30, 1)
    with store.tx():
        store.reschedule(item_id, 3.0, 2, b=2)
    (item,) = store.lease_due(3.0, 30, 1)
    assert (item.attempt, item.payload) == (2, {"a": 1, "b": 2})


def test_an_event_id_is_stored_once(store: Store) -> None:
    event = {"id": "e1", "name": "a", "data": {"v": 1}}
    with store.tx():
        assert store.insert_event(event, 1.0) is True
        assert store.insert_event({**event, "data": {"v": 2}}, 2.0) is False
    assert store.get_event("e1") == event


def test_memos_follow_completion_order_and_are_never_overwritten(store: Store) -> None:
    make_run(store)
    with store.tx():
        store.upsert_step("run1", "h2", name="b", op="StepRun", status="Planned", now=1.0)
        assert store.memoize_step(
            "run1", "h1", {"data": 1}, name="a", op="StepRun", status="Completed", now=2.0
        )
        assert store.memoize_step(
            "run1", "h2", None, name="b", op="Sleep", status="Completed", now=3.0
        )
        assert not store.memoize_step(
            "run1", "h1", {"data": 9}, name="a", op="StepRun", status="Completed", now=4.0
        )
    steps, stack = store.memos("run1")
    assert stack == ["h1", "h2"]
    assert steps == {"h1": {"data": 1}, "h2": None}


def test_a_failing_transaction_leaves_nothing_behind(store: Store) -> None:
    make_run(store)

    def write_then_fail() -> None:
        with store.tx():
            store.enqueue("call", 1.0, run_id="run1")
            store.update_run("run1", status="Completed")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert store.queue_size() == 0
    run = store.get_run("run1")
    assert run is not None
    assert run.status == "Running"


def test_pending_branches_never_go_below_zero(store: Store) -> None:
    make_run(store)
    with store.tx():
        assert store.add_pending("run1", 2) == 2
        assert store.add_pending("run1", -3) == 0


def test_a_pause_is_consumed_by_exactly_one_caller(store: Store) -> None:
    from inngest_mw_dev.store import PauseRow

    with store.tx():
        store.insert_pause(PauseRow("p", "run1", "h", "wait", "ev", None, None, 100.0))
    assert [p.id for p in store.pauses_for_event("ev", 50.0)] == ["p"]
    assert store.pauses_for_event("ev", 150.0) == []
    with store.tx():
        assert store.delete_pause("p") is True
        assert store.delete_pause("p") is False
