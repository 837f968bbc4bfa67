"""The physical floor, for scale: a plain call, a bound-method call and awaiting a trivial coroutine.

Each is timed in a tight loop and reported net of the same loop doing nothing.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from benchmarks.timing import Config

__all__ = ["AWAIT_FLOOR", "METHOD_FLOOR", "FloorRow", "run"]

_perf = time.perf_counter


METHOD_FLOOR = "bound method call `o.m()`"
"""The floor a sync hook call is measured against."""
AWAIT_FLOOR = "`await` a trivial coroutine (create + await)"
"""The floor an async hook call is measured against."""


@dataclass(frozen=True, slots=True)
class FloorRow:
    name: str
    ns: float
    """Net ns per operation (the empty loop subtracted)."""


def _noop() -> None:
    return None


class _Obj:
    def method(self) -> None:
        return None


async def _coro() -> None:
    return None


def _loop_empty(n: int) -> float:
    start = _perf()
    for _ in range(n):
        pass
    return _perf() - start


def _loop_call(n: int) -> float:
    f = _noop
    start = _perf()
    for _ in range(n):
        f()
    return _perf() - start


def _loop_method(n: int) -> float:
    o = _Obj()
    start = _perf()
    for _ in range(n):
        o.method()
    return _perf() - start


async def _aloop_empty(n: int) -> float:
    start = _perf()
    for _ in range(n):
        pass
    return _perf() - start


async def _aloop_await(n: int) -> float:
    c = _coro
    start = _perf()
    for _ in range(n):
        await c()
    return _perf() - start


def _median_ns(run: Callable[[int], float], n: int, repeat: int) -> float:
    values = []
    for _ in range(repeat):
        gc.collect()
        values.append(run(n) / n * 1e9)
    return statistics.median(values)


def _amedian_ns(run: Callable[[int], Coroutine[Any, Any, float]], n: int, repeat: int) -> float:
    async def go() -> float:
        values = []
        for _ in range(repeat):
            gc.collect()
            values.append(await run(n) / n * 1e9)
        return statistics.median(values)

    return asyncio.run(go())


def run(cfg: Config) -> list[FloorRow]:
    n = 20_000 if cfg.quick else 1_000_000
    repeat = max(3, cfg.repeat)
    empty = _median_ns(_loop_empty, n, repeat)
    aempty = _amedian_ns(_aloop_empty, n, repeat)
    return [
        FloorRow("plain function call `f()`", _median_ns(_loop_call, n, repeat) - empty),
        FloorRow(METHOD_FLOOR, _median_ns(_loop_method, n, repeat) - empty),
        FloorRow(
            AWAIT_FLOOR,
            _amedian_ns(_aloop_await, n, repeat) - aempty,
        ),
    ]
