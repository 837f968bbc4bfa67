"""Cron ``jitter``: each tick fires a random [0, jitter] seconds late, anchored on the schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inngest_mw_dev.machine import RunMachine
from inngest_mw_dev.registration import parse_registration
from inngest_mw_dev.store import Store

HOUR = 3600.0
START = 1_800_000_000.0  # a whole hour (UTC), so hourly ticks fall on multiples of HOUR


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _machine(tmp_path: Path, trigger: dict[str, Any], clock: Clock) -> RunMachine:
    machine = RunMachine(Store(tmp_path / "engine.db"), clock=clock)
    function = {
        "id": "app-tick",
        "name": "tick",
        "triggers": [trigger],
        "steps": {"step": {"id": "step", "runtime": {"type": "http", "url": "http://x"}}},
    }
    machine.register(
        parse_registration(
            {"appName": "app", "url": "http://127.0.0.1:1/api", "functions": [function]}
        )
    )
    return machine


def _fire_ticks(machine: RunMachine, clock: Clock, count: int) -> list[float]:
    """Fire the queued tick ``count`` times at its due time; the offsets from each whole hour."""
    offsets = []
    for _ in range(count):
        (item,) = machine.store.cron_items("app-tick")
        offsets.append(item.run_at % HOUR)
        clock.now = item.run_at
        machine.fire_cron(item)
    return offsets


def test_ticks_are_delayed_by_at_most_the_jitter_and_stay_on_schedule(tmp_path: Path) -> None:
    clock = Clock(START + 10)
    machine = _machine(tmp_path, {"cron": "0 * * * *", "jitter": "30s"}, clock)
    offsets = _fire_ticks(machine, clock, 12)
    assert all(0 <= offset <= 30 for offset in offsets)
    assert len(set(offsets)) > 1  # actually random, not a fixed delay
    # Every hour fired exactly once: jitter never skips or repeats a tick.
    (item,) = machine.store.cron_items("app-tick")
    assert item.run_at // HOUR == START // HOUR + 13


def test_without_jitter_ticks_fire_on_the_schedule(tmp_path: Path) -> None:
    clock = Clock(START + 10)
    machine = _machine(tmp_path, {"cron": "0 * * * *"}, clock)
    assert _fire_ticks(machine, clock, 3) == [0.0, 0.0, 0.0]


def test_ticks_missed_while_down_are_skipped_even_with_jitter(tmp_path: Path) -> None:
    clock = Clock(START + 10)
    machine = _machine(tmp_path, {"cron": "0 * * * *", "jitter": "30s"}, clock)
    (item,) = machine.store.cron_items("app-tick")
    clock.now = START + 5 * HOUR + 100  # four more ticks passed while the engine was stopped
    machine.fire_cron(item)
    (item,) = machine.store.cron_items("app-tick")
    assert START + 6 * HOUR <= item.run_at <= START + 6 * HOUR + 30
