"""Load test: N events sent concurrently to the embedded engine must start exactly N runs.

``python -m benchmarks.load [--events 10000] [--senders 64] [--steps 2]`` starts the engine and an
inngest-mw app (uvicorn) on 127.0.0.1, sends the events, waits for every run, then checks that each
event started exactly one run, each step ran exactly once, and nothing was lost. It prints
throughput, run latency and peak memory, and writes ``benchmarks/results/load.json``. Section 5 of
``python -m benchmarks`` drives the same stack (``stack``, ``drive``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import resource
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.demo import serve_app

import inngest_mw
from benchmarks.output import add_out_options, out_dir

EVENT = "load/work"


@dataclass
class LoadResult:
    events: int
    steps: int
    runs: int
    lost: int
    duplicated_runs: int
    duplicated_steps: int
    send_seconds: float
    total_seconds: float
    events_per_second: float
    runs_per_second: float
    run_latency_p50_ms: float
    run_latency_p99_ms: float
    peak_rss_mib: float

    @property
    def exact(self) -> bool:
        return self.runs == self.events and not (
            self.lost or self.duplicated_runs or self.duplicated_steps
        )


class Ledger:
    """Side effects the app performs, per event number ``n`` and step index (thread-safe)."""

    def __init__(self, steps: int) -> None:
        self.last = steps - 1
        self.lock = threading.Lock()
        self.steps: Counter[tuple[int, int]] = Counter()
        self.first_hit: dict[tuple[int, int], float] = {}
        self.finished: dict[int, float] = {}

    def hit(self, n: int, step: int) -> int:
        now = time.time()
        with self.lock:
            self.steps[(n, step)] += 1
            self.first_hit.setdefault((n, step), now)
            if step == self.last:
                self.finished.setdefault(n, now)
        return n


def build(client: inngest_mw.Inngest, ledger: Ledger) -> list[inngest_mw.Function[Any]]:
    """One function running ``ledger``'s number of steps, each recording itself in the ledger."""

    @client.create_function(fn_id="work", trigger=inngest_mw.TriggerEvent(event=EVENT))
    async def work(ctx: inngest_mw.Context) -> int:
        n = int(ctx.event.data["n"])
        for step in range(ledger.last + 1):
            await ctx.step.run(f"s{step}", ledger.hit, n, step)
        return n

    return [work]


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 (nearest rank) of ``values``, rounded to 0.1; zeros when empty."""
    if not values:
        return 0.0, 0.0
    ordered = sorted(values)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return round(statistics.median(ordered), 1), round(p99, 1)


async def _send_all(url: str, count: int, senders: int) -> tuple[dict[int, str], dict[int, float]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    ids: dict[int, str] = {}
    sent_at: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def sender() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                event = {"name": EVENT, "data": {"n": n}}
                sent_at[n] = time.time()
                response = await http.post("/e/load-key", json=event)
                response.raise_for_status()
                [ids[n]] = response.json()["ids"]

        await asyncio.gather(*(sender() for _ in range(senders)))
    return ids, sent_at


@dataclass
class Sent:
    """What ``drive`` did: each event number's event ID and send time, and the timings."""

    ids: dict[int, str]
    sent_at: dict[int, float]
    start: float
    send_seconds: float
    total_seconds: float


@contextlib.contextmanager
def stack(steps: int) -> Iterator[tuple[str, Ledger]]:
    """The engine and a synced inngest-mw app (uvicorn) with a ``steps``-step function, on
    127.0.0.1; yields the engine URL and the app's ledger."""
    ledger = Ledger(steps)
    with (
        tempfile.TemporaryDirectory() as tmp,
        EngineThread(Path(tmp) / "load.db", port=0) as engine,
    ):
        client = inngest_mw.Inngest(
            app_id="load",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        with serve_app(serve(client, build(client, ledger))) as app_url:
            httpx.put(app_url, timeout=30).raise_for_status()
            yield engine.url, ledger


def drive(engine_url: str, ledger: Ledger, events: int, senders: int, timeout: float) -> Sent:
    """Send ``events`` events concurrently; wait (up to ``timeout``) for every run's last step."""
    start = time.time()
    ids, sent_at = asyncio.run(_send_all(engine_url, events, senders))
    send_seconds = time.time() - start
    deadline = time.monotonic() + timeout
    while len(ledger.finished) < events and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let any duplicate execution show itself
    return Sent(ids, sent_at, start, send_seconds, time.time() - start)


def run_load(events: int, senders: int, timeout: float, steps: int = 2) -> LoadResult:
    with stack(steps) as (engine_url, ledger):
        sent = drive(engine_url, ledger, events, senders, timeout)
        with httpx.Client(base_url=engine_url, timeout=30) as http:
            runs_per_event = Counter(
                len(http.get(f"/v1/events/{i}/runs").json()["data"]) for i in sent.ids.values()
            )
    p50, p99 = percentiles([(at - sent.sent_at[n]) * 1000 for n, at in ledger.finished.items()])
    finished = len(ledger.finished)
    return LoadResult(
        events=events,
        steps=steps,
        runs=sum(count * runs for count, runs in runs_per_event.items()),
        lost=events - finished,
        duplicated_runs=sum(runs for count, runs in runs_per_event.items() if count > 1),
        duplicated_steps=sum(1 for hits in ledger.steps.values() if hits > 1),
        send_seconds=round(sent.send_seconds, 2),
        total_seconds=round(sent.total_seconds, 2),
        events_per_second=round(events / sent.send_seconds, 1),
        runs_per_second=round(finished / sent.total_seconds, 1),
        run_latency_p50_ms=p50,
        run_latency_p99_ms=p99,
        peak_rss_mib=peak_rss_mib(),
    )


def peak_rss_mib() -> float:
    """This process's peak resident memory (engine, app and client all live in it)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=64, help="concurrent HTTP senders")
    parser.add_argument("--steps", type=int, default=2, help="steps per run (at least 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the runs")
    add_out_options(parser)
    args = parser.parse_args(argv)
    result = run_load(args.events, args.senders, args.timeout, max(1, args.steps))
    report = asdict(result) | {"exact": result.exact}
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:>22}: {value}")
    return 0 if result.exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
