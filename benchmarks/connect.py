"""Calls per second over connect against over HTTP, on the same engine, in the same run.

``python -m benchmarks.connect [--runs 200] [--rounds 5]`` starts the embedded engine (with its
connect gateway), an inngest-mw app served over HTTP by uvicorn and the same functions on a
connect worker, each in a thread of this process. Rounds alternate HTTP, connect, HTTP, ... so
drift hits both alike; each sends RUNS events for a 3-step function (checkpointing off, so every
step is one call request) and waits, on the engine's own history feed, for every run to
complete; a first round of each, unmeasured, warms both up. A cell is the median over the rounds of calls / (first event sent -> last run
completed); the figure to read is the ratio, connect / HTTP. Writes ``connect.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import inngest_mw_connect
import uvicorn
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.history import HistoryNote

import inngest_mw
from benchmarks.output import add_out_options, out_dir
from inngest_mw import CommRequest, CommResponse, Context, TriggerEvent

STEPS = 3
TIMEOUT_S = 300.0
_BATCH = 100


class _Completions:
    """Counts completed runs per function from the engine's history feed."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.done: Counter[str] = Counter()

    def note(self, note: HistoryNote) -> None:
        if note.kind == "completed":
            with self.lock:
                self.done[note.function_id] += 1
                self.lock.notify_all()

    def wait(self, function_id: str, count: int, timeout: float) -> float:
        """Block until ``count`` runs of the function have completed; the moment they had."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.done[function_id] < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{function_id}: {self.done[function_id]} of {count} runs")
                self.lock.wait(left)
        return time.perf_counter()


_CALLS: Counter[str] = Counter()
"""Call requests per app, counted by ``_Counter``."""


class _Counter(inngest_mw.Middleware):
    """Counts call requests, whichever way they arrive."""

    async def wrap_request(
        self, call_next: Callable[[], Awaitable[CommResponse]], request: CommRequest
    ) -> CommResponse:
        _CALLS[self.client.app_id] += 1
        return await call_next()


def _app(app_id: str, engine_url: str) -> tuple[inngest_mw.Inngest, list[inngest_mw.Function[Any]]]:
    client = inngest_mw.Inngest(
        app_id=app_id,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=False,
        middleware=[_Counter],
    )

    @client.create_function(fn_id="steps", trigger=TriggerEvent(event=f"{app_id}/go"))
    async def steps(ctx: Context) -> int:
        total = 0
        for i in range(STEPS):
            total += await ctx.step.run(f"s{i}", lambda i=i: i)
        return total

    return client, [steps]


def _send(engine_url: str, name: str, runs: int) -> None:
    with httpx.Client(timeout=30) as http:
        for start in range(0, runs, _BATCH):
            batch = [
                {"name": name, "data": {"n": n}} for n in range(start, min(runs, start + _BATCH))
            ]
            http.post(f"{engine_url}/e/bench", json=batch).raise_for_status()


def measure(runs: int, rounds: int) -> dict[str, Any]:
    completions = _Completions()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EngineThread(
            Path(tmp) / "engine.db", port=0, connect_port=0, on_history=completions.note
        ) as engine,
    ):
        http_client, http_fns = _app("bench-http", engine.url)
        connect_client, connect_fns = _app("bench-connect", engine.url)
        server = uvicorn.Server(
            uvicorn.Config(
                serve(http_client, http_fns),
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="off",
            )
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        httpx.post(
            f"{engine.url}/fn/sync",
            params={"url": f"http://127.0.0.1:{port}/api/inngest"},
            timeout=30,
        ).raise_for_status()
        worker = inngest_mw_connect.Worker(connect_client, connect_fns, shutdown_signals=None)
        worker_thread = threading.Thread(target=lambda: _run_worker(worker), daemon=True)
        worker_thread.start()
        while engine.engine.connect is None or not engine.engine.connect.workers("bench-connect"):
            time.sleep(0.01)
        rates: dict[str, list[float]] = {"http": [], "connect": []}
        for round_number in range(rounds + 1):  # the first round warms both up, unmeasured
            for transport, app_id in (("http", "bench-http"), ("connect", "bench-connect")):
                before = _CALLS[app_id]
                started = time.perf_counter()
                _send(engine.url, f"{app_id}/go", runs)
                ended = completions.wait(f"{app_id}-steps", runs * (round_number + 1), TIMEOUT_S)
                calls = _CALLS[app_id] - before
                if round_number:
                    rates[transport].append(calls / (ended - started))
        worker.shutdown()
        worker_thread.join(30)
        server.should_exit = True
    http_rate = statistics.median(rates["http"])
    connect_rate = statistics.median(rates["connect"])
    return {
        "runs_per_round": runs,
        "rounds": rounds,
        "steps": STEPS,
        "calls_per_run": STEPS + 1,
        "http_calls_per_s": round(http_rate, 1),
        "connect_calls_per_s": round(connect_rate, 1),
        "ratio_connect_to_http": round(connect_rate / http_rate, 3) if http_rate else None,
        "rounds_http": [round(r, 1) for r in rates["http"]],
        "rounds_connect": [round(r, 1) for r in rates["connect"]],
    }


def _run_worker(worker: inngest_mw_connect.Worker) -> None:
    asyncio.run(worker.run())


def markdown(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Calls per second, {result['runs_per_round']} runs of a {result['steps']}-step function"
            f" per round, median of {result['rounds']} rounds:",
            "",
            "| transport | calls/s |",
            "|---|---:|",
            f"| HTTP (uvicorn, keep-alive) | {result['http_calls_per_s']:,.0f} |",
            f"| connect (WebSocket) | {result['connect_calls_per_s']:,.0f} |",
            f"| ratio connect / HTTP | {result['ratio_connect_to_http']} |",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.connect", description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="events per round and transport")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per transport")
    add_out_options(parser)
    args = parser.parse_args(argv)
    result = measure(args.runs, args.rounds)
    folder = out_dir(args)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "connect.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
