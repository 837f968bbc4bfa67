"""Checkpointing: event-to-completion latency of a ten-step function, with and without it.

``python -m benchmarks.checkpointing [--runs 30] [--steps 10]`` starts two engines, each with an
inngest-mw app (``benchmarks.step_app``, uvicorn, one worker) in processes of their own on
127.0.0.1, one app with checkpointing and one without, both running the same ``--steps``-step
function. It sends one event at a time, alternating between the two so both see the same machine,
and measures from the event's send to the run's end as its engine recorded it, and the call
requests each app answered per run. Every run must complete with each step executed once. It
prints both medians and their ratio, and writes ``checkpointing.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from benchmarks.engine_cpu import _processes
from benchmarks.output import add_out_options, out_dir
from benchmarks.step_app import EVENT

__all__ = ["CheckpointRow", "main", "run"]

_TERMINAL = ("Completed", "Failed", "Cancelled")


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    runs: int
    steps: int
    exact: bool
    """Every run completed with each of its steps executed once, in both modes."""
    on_p50_ms: float
    off_p50_ms: float
    on_requests_per_run: float
    off_requests_per_run: float

    @property
    def ratio(self) -> float:
        """Median latency with checkpointing over the median without (lower is better)."""
        return self.on_p50_ms / self.off_p50_ms if self.off_p50_ms > 0 else 0.0


@dataclass
class _Side:
    engine: httpx.Client
    app: httpx.Client
    latencies_ms: list[float]
    completed: int = 0

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.app.get("/stats").json()
        return stats

    def one_run(self, n: int) -> None:
        """Send event ``n`` and wait for its run to end."""
        sent = time.time()
        response = self.engine.post("/e/bench-key", json={"name": EVENT, "data": {"n": n}})
        response.raise_for_status()
        [event_id] = response.json()["ids"]
        run = self._wait(event_id)
        ended = dt.datetime.fromisoformat(run["ended_at"]).timestamp()
        self.latencies_ms.append((ended - sent) * 1000)
        self.completed += run["status"] == "Completed"

    def _wait(self, event_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = self.engine.get(f"/v1/events/{event_id}/runs").json()["data"]
            if found:
                run: dict[str, Any] = self.engine.get(f"/v1/runs/{found[0]['run_id']}").json()
                if run["data"]["status"] in _TERMINAL:
                    return dict(run["data"])
            time.sleep(0.02)  # the end time is the engine's record, not this poll's
        raise TimeoutError(f"the run of event {event_id} did not end within 60 s")


@contextlib.contextmanager
def _side(steps: int, checkpointing: bool) -> Iterator[_Side]:
    args = ["--checkpointing"] if checkpointing else []
    with (
        _processes(sys.executable, steps, None, args) as (engine_url, app_url, _, _),
        httpx.Client(base_url=engine_url, timeout=30) as engine,
        httpx.Client(base_url=app_url, timeout=30) as app,
    ):
        yield _Side(engine, app, [])


def run(runs: int = 30, steps: int = 10) -> CheckpointRow:
    """Measure ``runs`` runs each way, alternating which mode goes first."""
    with _side(steps, True) as on, _side(steps, False) as off:
        for side in (on, off):  # warm both stacks up
            side.one_run(-1)
            side.latencies_ms.clear()
            side.completed = 0
        before = {id(side): side.stats()["requests"] for side in (on, off)}
        for n in range(runs):
            for side in (on, off) if n % 2 == 0 else (off, on):
                side.one_run(n)
        stats = {id(side): side.stats() for side in (on, off)}
    exact = all(
        side.completed == runs
        and stats[id(side)]["steps"] == (runs + 1) * steps
        and stats[id(side)]["distinct_steps"] == (runs + 1) * steps
        for side in (on, off)
    )

    def per_run(side: _Side) -> float:
        requests: int = stats[id(side)]["requests"] - before[id(side)]
        return round(requests / runs, 2)

    return CheckpointRow(
        runs=runs,
        steps=steps,
        exact=exact,
        on_p50_ms=round(statistics.median(on.latencies_ms), 2),
        off_p50_ms=round(statistics.median(off.latencies_ms), 2),
        on_requests_per_run=per_run(on),
        off_requests_per_run=per_run(off),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpointing", description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="runs per mode (at least 1)")
    parser.add_argument("--steps", type=int, default=10, help="steps per run (at least 1)")
    add_out_options(parser)
    args = parser.parse_args(argv)
    row = run(max(1, args.runs), max(1, args.steps))
    report = asdict(row) | {"ratio": round(row.ratio, 3)}
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpointing.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:>22}: {value}")
    return 0 if row.exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
