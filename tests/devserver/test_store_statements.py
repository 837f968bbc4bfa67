"""The statements a tick costs. Requeued items wait for the next statement: the requeues of one
tick's answers, each followed only by its memo's INSERT, go out as one UPDATE, and no other
statement ever sees the queue without them; a rollback takes them back with the rest. A lease
reads only as many due rows as it may take, until items are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inngest_mw_dev.store import Store


def _statements(store: Store) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def _leased(store: Store, count: int) -> list[int]:
    with store.tx():
        ids = [store.enqueue("call", 1.0, run_id=f"r{n}", step="step") for n in range(count)]
    assert [item.id for item in store.lease_due(1.0, 60, count)] == ids
    return ids


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "e.db")
    try:
        yield store
    finally:
        store.close()


def test_the_requeues_between_memos_are_one_update_before_the_next_read(store: Store) -> None:
    ids = _leased(store, 3)
    seen = _statements(store)
    with store.tx():
        for n, item_id in enumerate(ids):
            assert store.memoize_step(
                f"r{n}", "h", {"data": n}, name="h", op="StepRun", status="Completed", now=2
            )
            store.requeue(item_id, 2.0 + n)
        assert not any(s.startswith("UPDATE") for s in seen)
        # The next statement of any kind sees them (a lease, here).
        assert [item.id for item in store.lease_due(3.0, 60, 10)] == ids[:2]
    updates = [s for s in seen if s.startswith("UPDATE queue SET run_at")]
    assert len(updates) == 1
    assert [s.split()[0] for s in seen].count("INSERT") == 3
    item = store.get_item(ids[2])
    assert item is not None
    assert (item.run_at, item.attempt, item.payload) == (4.0, 0, {})


def test_requeues_commit_with_their_transaction_and_roll_back_with_it(store: Store) -> None:
    first, second = _leased(store, 2)
    with store.tx():
        store.requeue(first, 5.0)
        store.requeue(first, 6.0)  # the last time given wins

    def abandoned() -> None:
        with store.tx():
            store.requeue(second, 5.0)
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        abandoned()
    assert [item.id for item in store.lease_due(9.0, 60, 10)] == [first]
    item = store.get_item(first)
    assert item is not None
    assert item.run_at == 6.0


def test_a_requeue_then_a_delete_leaves_no_item(store: Store) -> None:
    [item_id] = _leased(store, 1)
    with store.tx():
        store.requeue(item_id, 2.0)
        store.delete_item(item_id)
    assert store.get_item(item_id) is None
    assert store.queue_size() == 0


def test_without_a_transaction_a_requeue_is_written_at_once(store: Store) -> None:
    [item_id] = _leased(store, 1)
    seen = _statements(store)
    store.requeue(item_id, 2.0)
    assert len(seen) == 1
    assert seen[0].startswith("UPDATE queue")


def test_a_lease_reads_no_more_rows_than_it_may_take_until_items_are_refused(
    store: Store,
) -> None:
    with store.tx():
        ids = [store.enqueue("call", 1.0, run_id=f"r{n}", step="step") for n in range(100)]
    seen = _statements(store)
    assert [i.id for i in store.lease_due(1.0, 60, 10, lambda item: True)] == ids[:10]
    selects = [s for s in seen if s.startswith("SELECT")]
    assert len(selects) == 1
    assert selects[0].endswith("LIMIT 10")
    seen.clear()
    refused = set(ids[10:25])
    taken = store.lease_due(1.0, 60, 10, lambda item: item.id not in refused)
    assert [i.id for i in taken] == ids[25:35]
    assert [s.rsplit(" ", 1)[1] for s in seen if s.startswith("SELECT")] == ["10", "64"]
