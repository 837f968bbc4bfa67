"""``StoreThread.later_batch``: what one job hands the loop item by item arrives as one action
per job, with every item in order; the next job starts a batch of its own."""

from __future__ import annotations

import asyncio
import threading

from inngest_mw_dev.storethread import StoreThread


def test_the_items_of_one_job_reach_one_action_in_order() -> None:
    store = StoreThread()
    try:
        calls: list[tuple[str, list[object]]] = []

        def numbers(items: list[int]) -> None:
            calls.append((threading.current_thread().name, list(items)))

        def words(items: list[str]) -> None:
            calls.append((threading.current_thread().name, list(items)))

        def job(first: int) -> None:
            for n in range(first, first + 3):
                store.later_batch(numbers, n)
            store.later_batch(words, "a")
            store.later_batch(words, "b")

        async def two_jobs() -> str:
            await store.run(job, 0)
            await store.run(job, 10)
            return threading.current_thread().name

        loop_thread = asyncio.run(two_jobs())
        assert calls == [
            (loop_thread, [0, 1, 2]),
            (loop_thread, ["a", "b"]),
            (loop_thread, [10, 11, 12]),
            (loop_thread, ["a", "b"]),
        ]
    finally:
        store.stop()


def test_outside_a_job_an_item_is_handed_over_at_once() -> None:
    store = StoreThread()
    try:
        seen: list[list[int]] = []
        store.later_batch(seen.append, 1)
        store.later_batch(seen.append, 2)
        assert seen == [[1], [2]]
    finally:
        store.stop()
