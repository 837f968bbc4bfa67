"""Leasing reads due items a page at a time; no page boundary may hide, repeat or reorder work."""

from __future__ import annotations

from pathlib import Path

import pytest
from inngest_mw_dev.store import QueueItem, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "engine.db")


def _fill(store: Store, count: int) -> list[int]:
    """``count`` due items, several sharing each ``run_at`` so the (run_at, id) key is tested."""
    with store.tx():
        return [store.enqueue("call", 1.0 + n // 7, run_id=f"r{n}", step="s") for n in range(count)]


def test_items_refused_across_pages_stay_queued_and_later_ones_are_leased(store: Store) -> None:
    ids = _fill(store, 300)
    wanted = set(ids[250:])

    def admit(item: QueueItem) -> bool:
        return item.id in wanted

    taken = store.lease_due(100.0, 30, 20, admit)
    assert [i.id for i in taken] == ids[250:270]
    rest = store.lease_due(100.0, 30, 1000)
    assert [i.id for i in rest] == ids[:250] + ids[270:]


def test_leasing_in_small_batches_takes_every_item_once_in_order(store: Store) -> None:
    ids = _fill(store, 200)
    seen: list[int] = []
    while batch := store.lease_due(100.0, 30, 3, lambda item: True):
        seen += [i.id for i in batch]
    assert seen == ids


def test_a_limit_larger_than_a_page_is_filled(store: Store) -> None:
    ids = _fill(store, 500)
    taken = store.lease_due(100.0, 30, 450, lambda item: item.id % 2 == 0)
    assert [i.id for i in taken] == [i for i in ids if i % 2 == 0]
