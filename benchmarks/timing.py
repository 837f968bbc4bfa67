"""The measuring engine: interleaved, calibrated repeats; the median per-call time of each case.

Every group of cases is measured together: each case is warmed up, given a loop count so one repeat
lasts about ``Config.target_s``, then the repeats run round-robin (case A, B, C, A, B, C, ...), so
drift in machine speed hits every case of a group alike. A result is the median over the repeats
of the mean time per call within a repeat, like ``timeit.repeat`` read by its median.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

__all__ = ["Config", "Stats", "measure_async", "measure_sync"]

_perf = time.perf_counter


@dataclass(frozen=True, slots=True)
class Config:
    """How hard to measure: ``repeat`` values per case, each lasting about ``target_s``."""

    repeat: int = 11
    target_s: float = 0.1
    warmup: int = 3
    quick: bool = False
    max_number: int = 1_000_000

    @classmethod
    def full(cls) -> Config:
        return cls()

    @classmethod
    def quick_run(cls) -> Config:
        return cls(repeat=3, target_s=0.003, warmup=1, quick=True)


@dataclass(frozen=True, slots=True)
class Stats:
    """One case: median µs per call, and the spread of the repeats around it."""

    median_us: float
    values_us: tuple[float, ...]
    number: int

    @property
    def spread(self) -> float:
        """Half the distance between the quartiles of the repeats, relative to the median."""
        if len(self.values_us) < 3 or self.median_us <= 0:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.values_us, n=4, method="inclusive")
        return (q3 - q1) / 2 / self.median_us


def _number(single_s: float, cfg: Config) -> int:
    if single_s <= 0:
        return cfg.max_number
    return max(1, min(cfg.max_number, int(cfg.target_s / single_s)))


def _stats(values: list[float], number: int) -> Stats:
    per_call = [v / number * 1e6 for v in values]
    return Stats(statistics.median(per_call), tuple(per_call), number)


def _run_sync(call: Callable[[], object], number: int) -> float:
    start = _perf()
    for _ in range(number):
        call()
    return _perf() - start


def measure_sync(
    cases: Mapping[str, Callable[[], object]],
    cfg: Config,
    between: Callable[[], object] | None = None,
) -> dict[str, Stats]:
    """Time each zero-argument callable; the cases of one call are interleaved.

    ``between`` runs untimed before every repeat, e.g. to empty the in-memory sinks that
    middleware under test fill, so memory does not grow over the run.
    """
    numbers: dict[str, int] = {}
    for key, call in cases.items():
        for _ in range(cfg.warmup):
            call()
        single = _run_sync(call, 1)
        numbers[key] = _number(min(single, _run_sync(call, 1)), cfg)
    values: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(cfg.repeat):
        for key, call in cases.items():
            if between is not None:
                between()
            gc.collect()
            values[key].append(_run_sync(call, numbers[key]))
    return {key: _stats(values[key], numbers[key]) for key in cases}


async def _run_async(call: Callable[[], Awaitable[object]], number: int) -> float:
    start = _perf()
    for _ in range(number):
        await call()
    return _perf() - start


async def measure_async(
    cases: Mapping[str, Callable[[], Awaitable[object]]],
    cfg: Config,
    between: Callable[[], object] | None = None,
) -> dict[str, Stats]:
    """``measure_sync`` for coroutine functions, awaited one after another on the running loop."""
    numbers: dict[str, int] = {}
    for key, call in cases.items():
        for _ in range(cfg.warmup):
            await call()
        single = await _run_async(call, 1)
        numbers[key] = _number(min(single, await _run_async(call, 1)), cfg)
    values: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(cfg.repeat):
        for key, call in cases.items():
            if between is not None:
                between()
            gc.collect()
            values[key].append(await _run_async(call, numbers[key]))
    return {key: _stats(values[key], numbers[key]) for key in cases}
