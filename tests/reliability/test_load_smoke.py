"""A small run of the load test: every event starts exactly one run, each step runs once."""

from __future__ import annotations

from benchmarks.load import run_load


def test_concurrent_events_start_exactly_one_run_each_with_no_loss() -> None:
    result = run_load(events=200, senders=16, timeout=120)
    assert (result.runs, result.lost, result.duplicated_runs, result.duplicated_steps) == (
        200,
        0,
        0,
        0,
    )
