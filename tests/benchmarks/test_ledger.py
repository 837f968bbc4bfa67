"""The load test's ledger: what it reports decides whether a load was exact, so it must see every
step that ran, each repeat of one, and when each first ran."""

from __future__ import annotations

import threading

from benchmarks.load import Ledger


def test_an_empty_ledger_has_seen_nothing() -> None:
    ledger = Ledger(steps=2)
    assert (ledger.finished, ledger.steps_run(), ledger.duplicated_steps()) == (0, 0, 0)
    assert ledger.finished_at() == {}
    assert ledger.first_hit(0, 0) is None
    assert ledger.first_hit(10_000, 1) is None


def test_it_counts_steps_repeats_and_runs_that_reached_their_last_step() -> None:
    ledger = Ledger(steps=3)
    for n in (0, 1, 2):
        for step in range(3):
            assert ledger.hit(n, step) == n
    ledger.hit(3, 0)  # a run that has not finished
    ledger.hit(1, 1)  # a step that ran twice
    ledger.hit(1, 2)  # the last step again: the run finished once
    assert ledger.steps_run() == 10
    assert ledger.duplicated_steps() == 2
    assert ledger.finished == 3
    assert sorted(ledger.finished_at()) == [0, 1, 2]


def test_a_step_keeps_the_time_it_first_ran() -> None:
    ledger = Ledger(steps=2)
    ledger.hit(5, 0)
    first = ledger.first_hit(5, 0)
    assert first is not None
    ledger.hit(5, 0)
    ledger.hit(5, 1)
    assert ledger.first_hit(5, 0) == first
    last = ledger.first_hit(5, 1)
    assert last is not None
    assert last >= first
    assert ledger.finished_at() == {5: last}
    assert ledger.first_hit(4, 0) is None


def test_event_numbers_far_apart_and_many_repeats_are_all_kept() -> None:
    ledger = Ledger(steps=1)
    ledger.hit(50_000, 0)
    for _ in range(300):  # past what one byte counts: still one duplicated step
        ledger.hit(7, 0)
    assert ledger.steps_run() == 2
    assert ledger.duplicated_steps() == 1
    assert set(ledger.finished_at()) == {7, 50_000}


def test_hits_from_many_threads_are_all_counted() -> None:
    ledger = Ledger(steps=2)

    def worker(offset: int) -> None:
        for n in range(offset, 4_000, 8):
            ledger.hit(n, 0)
            ledger.hit(n, 1)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (ledger.steps_run(), ledger.duplicated_steps(), ledger.finished) == (8_000, 0, 4_000)
