"""Load test: N events sent concurrently to the embedded engine must start exactly N runs.

``python -m benchmarks.load [--events 10000] [--senders 64]`` starts the engine and an inngest-mw
app (uvicorn) on 127.0.0.1, sends the events, waits for every run, then checks that each event
started exactly one run, each step ran exactly once, and nothing was lost. It prints throughput,
run latency and peak memory, and writes ``benchmarks/results/load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.demo import serve_app

import inngest_mw

RESULTS = Path(__file__).parent / "results"


@dataclass
class LoadResult:
    events: int
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
    """Side effects the app performs, counted per event number (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: Counter[tuple[int, str]] = Counter()
        self.finished: dict[int, float] = {}

    def hit(self, n: int, step: str) -> int:
        with self.lock:
            self.steps[(n, step)] += 1
            if step == "finish":
                self.finished.setdefault(n, time.time())
        return n


def build(client: inngest_mw.Inngest, ledger: Ledger) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="work", trigger=inngest_mw.TriggerEvent(event="load/work"))
    async def work(ctx: inngest_mw.Context) -> int:
        n = int(ctx.event.data["n"])
        await ctx.step.run("do", ledger.hit, n, "do")
        return await ctx.step.run("finish", ledger.hit, n, "finish")

    return [work]


async def _send_all(url: str, count: int, senders: int) -> tuple[list[str], dict[int, float]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    ids: list[str] = []
    sent_at: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def sender() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                event = {"name": "load/work", "data": {"n": n}}
                sent_at[n] = time.time()
                response = await http.post("/e/load-key", json=event)
                response.raise_for_status()
                ids.extend(response.json()["ids"])

        await asyncio.gather(*(sender() for _ in range(senders)))
    return ids, sent_at


def run_load(events: int, senders: int, timeout: float) -> LoadResult:
    ledger = Ledger()
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
            start = time.time()
            ids, sent_at = asyncio.run(_send_all(engine.url, events, senders))
            send_seconds = time.time() - start
            deadline = time.monotonic() + timeout
            while len(ledger.finished) < events and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)  # let any duplicate execution show itself
            total = time.time() - start
            with httpx.Client(base_url=engine.url, timeout=30) as http:
                runs_per_event = Counter(
                    len(http.get(f"/v1/events/{i}/runs").json()["data"]) for i in ids
                )
    latencies = sorted((ledger.finished[n] - sent_at[n]) * 1000 for n in ledger.finished)
    finished = len(ledger.finished)
    return LoadResult(
        events=events,
        runs=sum(count * runs for count, runs in runs_per_event.items()),
        lost=events - finished,
        duplicated_runs=sum(runs for count, runs in runs_per_event.items() if count > 1),
        duplicated_steps=sum(1 for hits in ledger.steps.values() if hits > 1),
        send_seconds=round(send_seconds, 2),
        total_seconds=round(total, 2),
        events_per_second=round(events / send_seconds, 1),
        runs_per_second=round(finished / total, 1),
        run_latency_p50_ms=round(statistics.median(latencies), 1) if latencies else 0.0,
        run_latency_p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 1)
        if latencies
        else 0.0,
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=64, help="concurrent HTTP senders")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run_load(args.events, args.senders, args.timeout)
    report = asdict(result) | {"exact": result.exact}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:>22}: {value}")
    return 0 if result.exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
