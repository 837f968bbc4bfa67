"""The ``dev`` command's live log: a line on stdout per history entry and notice.

A scheduler tick records several history entries per call it handles; printing each with its own
flushed ``print`` made a ``write`` per line. Lines are gathered instead and written together, with
one flush, once the loop has finished what it is doing (``call_soon``), so the log reads the same
and costs one system call per tick rather than per line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import math
from typing import TextIO

from inngest_mw_dev.history import HistoryNote
from inngest_mw_dev.render import describe

__all__ = ["LiveLog", "clock"]


def clock(ts: float) -> str:
    """``HH:MM:SS.mmm`` in local time (as ``strftime("%H:%M:%S.%f")[:-3]``, for less: the
    ``HH:MM:SS`` of a second is made once, and a second holds many lines)."""
    second = math.floor(ts)
    micros = round((ts - second) * 1e6)  # as ``fromtimestamp`` rounds: half to even
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{_hms(second)}.{micros // 1000:03d}"


@functools.lru_cache(maxsize=4)
def _hms(second: int) -> str:
    t = dt.datetime.fromtimestamp(second)
    return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


class LiveLog:
    """Lines for ``out``, written together once per turn of the running loop (at once when
    there is none)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lines: list[str] = []

    def note(self, note: HistoryNote) -> None:
        line = describe(note.kind, note.step, note.detail)
        self.add(f"{clock(note.ts)}  {note.function_id:<32} {note.run_id}  {line}")

    def notice(self, line: str) -> None:
        self.add(f"{clock(dt.datetime.now().timestamp())}  {line}")

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) > 1:
            return  # a write is already due
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        """Write the lines gathered so far."""
        if self._lines:
            lines, self._lines = self._lines, []
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
