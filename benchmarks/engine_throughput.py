"""Section 5: events -> completed runs per second on the embedded engine, and per-step latency.

A 3-step function in an inngest-mw app under uvicorn, driven by ``EngineThread`` over real HTTP on
127.0.0.1 (the ``load`` test's stack). Every run must complete exactly once with each step executed
once; latencies come from the engine's run records and from the app's own clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks import load
from benchmarks.timing import Config

__all__ = ["RUNS_FULL", "RUNS_QUICK", "SENDERS", "STEPS", "EngineRow", "run"]

STEPS = 3
RUNS_FULL = 1000
RUNS_QUICK = 50
SENDERS = 64
TIMEOUT_S = 300.0
_FETCHERS = 16
_TERMINAL = ("Completed", "Failed", "Cancelled")


@dataclass(frozen=True, slots=True)
class EngineRow:
    runs: int
    steps: int
    senders: int
    completed: int
    exact: bool
    """Every event ran exactly one run, which completed, each of its steps executed once."""
    send_s: float
    total_s: float
    """From the first event sent to the last run's end as the engine recorded it."""
    run_ms: tuple[float, ...]
    """Per run: event sent -> run ended (engine)."""
    step_ms: tuple[float, ...]
    """Per step: the engine's ``duration_ms`` (call request sent -> step saved; 1 ms resolution)."""
    first_step_ms: tuple[float, ...]
    """Per run, app clock: event sent -> first step executing."""
    step_gap_ms: tuple[float, ...]
    """Per later step, app clock: previous step executing -> this one executing (one engine
    round trip: response saved, next call scheduled and sent, memoized steps replayed)."""
    peak_rss_mib: float

    @property
    def events_per_second(self) -> float:
        return self.runs / self.send_s if self.send_s > 0 else 0.0

    @property
    def runs_per_second(self) -> float:
        return self.completed / self.total_s if self.total_s > 0 else 0.0


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


async def _runs_per_event(
    engine_url: str, event_ids: dict[int, str], timeout: float
) -> dict[int, list[dict[str, Any]]]:
    """Per event number: every run its event started (``GET /v1/events/{id}/runs``), each as
    ``GET /v1/runs/{id}`` once it has ended (or at ``timeout``)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in event_ids:
        queue.put_nowait(n)
    runs: dict[int, list[dict[str, Any]]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(base_url=engine_url, timeout=30) as http:

        async def get(path: str) -> Any:
            response = await http.get(path)
            response.raise_for_status()
            return response.json()["data"]

        async def fetcher() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                runs[n] = []
                for summary in await get(f"/v1/events/{event_ids[n]}/runs"):
                    run = await get(f"/v1/runs/{summary['run_id']}")
                    while run["status"] not in _TERMINAL and loop.time() < deadline:
                        await asyncio.sleep(0.05)
                        run = await get(f"/v1/runs/{summary['run_id']}")
                    runs[n].append(run)

        await asyncio.gather(*(fetcher() for _ in range(_FETCHERS)))
    return runs


def run(cfg: Config, runs: int | None = None) -> EngineRow:
    count = runs if runs is not None else (RUNS_QUICK if cfg.quick else RUNS_FULL)
    with load.stack(STEPS) as (engine_url, ledger):
        sent = load.drive(engine_url, ledger, count, SENDERS, TIMEOUT_S)
        by_event = asyncio.run(_runs_per_event(engine_url, sent.ids, TIMEOUT_S))
    completed = {
        n: r for n, records in by_event.items() for r in records if r["status"] == "Completed"
    }
    ended = {n: _epoch(r["ended_at"]) for n, r in completed.items()}
    step_ms = [
        float(step["duration_ms"])
        for r in completed.values()
        for step in r["steps"]
        if step["duration_ms"] is not None
    ]
    first_step_ms = [
        (first - sent.sent_at[n]) * 1000
        for n in sent.sent_at
        if (first := ledger.first_hit(n, 0)) is not None
    ]
    step_gap_ms = [
        (later - earlier) * 1000
        for n in sent.sent_at
        for i in range(1, STEPS)
        if (later := ledger.first_hit(n, i)) is not None
        and (earlier := ledger.first_hit(n, i - 1)) is not None
    ]
    exact = (
        len(by_event) == count
        and all(len(records) == 1 for records in by_event.values())
        and len(completed) == count
        and all(len(r["steps"]) == STEPS for r in completed.values())
        and ledger.steps_run() == count * STEPS
        and ledger.duplicated_steps() == 0
    )
    return EngineRow(
        runs=count,
        steps=STEPS,
        senders=SENDERS,
        completed=len(completed),
        exact=exact,
        send_s=sent.send_seconds,
        total_s=(max(ended.values()) - sent.start) if ended else sent.total_seconds,
        run_ms=tuple((at - sent.sent_at[n]) * 1000 for n, at in ended.items()),
        step_ms=tuple(step_ms),
        first_step_ms=tuple(first_step_ms),
        step_gap_ms=tuple(step_gap_ms),
        peak_rss_mib=load.peak_rss_mib(),
    )
