"""Bulk intake: new events are stored and queued once each, in order; repeats are ignored."""

from __future__ import annotations

from pathlib import Path

from inngest_mw_dev.store import Store


def _event(event_id: str) -> dict[str, object]:
    return {"id": event_id, "name": "a", "data": {}, "user": {}, "ts": 1}


def test_only_new_ids_are_stored_and_queued_in_their_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "e.db")
    with store.tx():
        assert store.insert_events([_event("b"), _event("a")], 1.0) == ["b", "a"]
    with store.tx():
        fresh = store.insert_events([_event("c"), _event("a"), _event("c"), _event("d")], 2.0)
    assert fresh == ["c", "d"]
    items = store.lease_due(2.0, 30, 100)
    assert [(i.kind, i.payload["event_id"]) for i in items] == [
        ("event", "b"),
        ("event", "a"),
        ("event", "c"),
        ("event", "d"),
    ]
    assert store.get_event("d") == _event("d")
    store.close()


def test_a_batch_larger_than_one_statement_is_split_and_kept_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "e.db")
    ids = [f"e{n:05d}" for n in range(2_500)]
    with store.tx():
        assert store.insert_events([_event(i) for i in ids], 1.0) == ids
    assert store.queue_size() == 2_500
    store.close()
