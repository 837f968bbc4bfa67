"""A small run of the load test: every event starts exactly one run, each step runs once."""

from __future__ import annotations

import pytest
from inngest_mw_dev import store as store_module

from benchmarks.load import run_load


def test_concurrent_events_start_exactly_one_run_each_with_no_loss() -> None:
    result = run_load(events=200, senders=16, timeout=120)
    assert (result.runs, result.lost, result.duplicated_runs, result.duplicated_steps) == (
        200,
        0,
        0,
        0,
    )


def test_a_backlog_beyond_the_runs_kept_in_memory_loses_and_repeats_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "_RUNS_KEPT", 8)  # most runs are read back, not kept
    result = run_load(events=200, senders=16, timeout=120, steps=3)
    assert (result.runs, result.lost, result.duplicated_runs, result.duplicated_steps) == (
        200,
        0,
        0,
        0,
    )
