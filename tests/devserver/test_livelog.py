"""The dev command's live log: the lines of one loop turn go out in one write, in order."""

from __future__ import annotations

import asyncio
import datetime as dt
import io

from inngest_mw_dev.history import HistoryNote
from inngest_mw_dev.livelog import LiveLog, clock


class _Out(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _note(kind: str, step: str | None = None) -> HistoryNote:
    return HistoryNote("run1", "app-fn", 1_700_000_000.25, kind, step, {"duration_ms": 12})


def test_lines_of_one_loop_turn_are_written_together_in_order() -> None:
    out = _Out()
    log = LiveLog(out)

    async def turn() -> int:
        log.note(_note("started"))
        log.note(_note("step_completed", "charge"))
        log.notice("app synced")
        written = out.writes
        await asyncio.sleep(0)
        return written

    assert asyncio.run(turn()) == 0  # nothing before the loop has finished its turn
    assert out.writes == 1
    lines = out.getvalue().splitlines()
    assert [line.split("  ", 1)[1].split()[-1] for line in lines] == [
        "started",
        "12ms",
        "synced",
    ]
    assert lines[1].endswith('run1  step "charge" completed in 12ms')


def test_without_a_loop_a_line_is_written_at_once() -> None:
    out = _Out()
    LiveLog(out).notice("hello")
    assert out.writes == 1
    assert out.getvalue().endswith("  hello\n")


def test_clock_reads_as_strftime_to_the_millisecond() -> None:
    edges = (1_700_000_059.9999995, 1_700_000_059.9999994, 1_700_000_000.0000005, 86_399.99999951)
    for ts in (
        0.0,
        1_700_000_000.0,
        1_700_000_000.9995,
        1_700_000_059.123456,
        1e9 + 0.0005,
        *edges,
    ):
        assert clock(ts) == dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]
