"""Web UI render time with a large history: the runs page and a run's detail over HTTP.

``python -m benchmarks.ui_render [--runs 10000] [--repeat 50]`` fills a fresh engine database
with RUNS finished runs (each with its event, steps and history, as the engine writes them) and
one run of 200 steps, starts
the engine on 127.0.0.1 and times full page loads (request to last byte) of the runs page (plain and
filtered), a run's detail page, and the JSON API behind them, next to ``/health`` as the floor
of one HTTP round trip. Target: under 200 ms per page. Writes ``benchmarks/results/ui_render.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from inngest_mw_dev import EngineThread
from inngest_mw_dev.ids import new_ulid
from inngest_mw_dev.store import RunRow, Store

from benchmarks.output import add_out_options, out_dir

FUNCTIONS = ("bench-checkout", "bench-refund", "bench-digest")
STEPS = ("reserve", "charge", "cool-off", "email", "points")
TARGET_MS = 200.0
BIG_RUN_STEPS = 200
_CONFIG = {
    "name": "{fn}",
    "triggers": [{"event": "bench/{fn}"}],
    "steps": {
        "step": {
            "id": "step",
            "name": "step",
            "runtime": {"type": "http", "url": "http://127.0.0.1:9/api/inngest"},
        }
    },
}


def _error(step: str) -> dict[str, Any]:
    stack = (
        "Traceback (most recent call last):\n"
        + "".join(
            f'  File "/app/shop/{step}.py", line {10 + i}, in handler_{i}\n    do_{i}()\n'
            for i in range(8)
        )
        + f"ValueError: {step} failed"
    )
    return {"name": "ValueError", "message": f"{step} failed", "stack": stack}


def fill(db: Path, runs: int, seed: int = 7) -> tuple[str, str]:
    """Write ``runs`` finished runs and one of BIG_RUN_STEPS steps; a failed run's ID and its."""
    rnd = random.Random(seed)
    store = Store(db)
    now = time.time()
    start = now - runs * 2.0
    detail_run = ""
    with store.tx():
        store.write(
            "INSERT OR REPLACE INTO apps VALUES (?,?,?,?,?,?,?,?)",
            "bench-app",
            "bench",
            "http://127.0.0.1:9/api/inngest",
            "py:v0",
            "asgi",
            "x",
            "s",
            now,
        )
        for fn in FUNCTIONS:
            config = json.loads(json.dumps(_CONFIG).replace("{fn}", fn))
            store.upsert_function(fn, "bench-app", fn, {"id": fn, **config}, now)
        for index in range(runs):
            queued = start + index * 2.0
            fn = FUNCTIONS[index % len(FUNCTIONS)]
            failed = rnd.random() < 0.1
            order = f"A-{index}"
            event_id = new_ulid(int(queued * 1000))
            event: dict[str, Any] = {
                "id": event_id,
                "name": f"bench/{fn}",
                "ts": int(queued * 1000),
                "data": {"order": order, "qty": rnd.randint(1, 9), "note": "x" * 200},
                "user": {},
            }
            store.insert_event(event, queued)
            run_id = new_ulid(int(queued * 1000))
            output = None if failed else {"order": order, "ok": True}
            store.insert_run(
                RunRow(
                    run_id,
                    fn,
                    "bench-app",
                    event_id,
                    [event],
                    "Failed" if failed else "Completed",
                    output,
                    _error("charge") if failed else None,
                    queued,
                    queued + 0.001,
                    queued + 1.5,
                    False,
                    0,
                    4,
                    None,
                )
            )
            store.add_history(run_id, queued, "queued", None, {"event": event["name"]})
            store.add_history(run_id, queued + 0.001, "started", None, {})
            at = queued + 0.002
            for number, step in enumerate(STEPS):
                if failed and step == "charge":
                    store.memoize_step(
                        run_id,
                        f"h{number}",
                        {"error": _error(step)},
                        name=step,
                        op="StepRun",
                        status="Failed",
                        now=at + 0.01,
                        started_at=at,
                    )
                    store.add_history(
                        run_id,
                        at,
                        "retry_scheduled",
                        step,
                        {"attempt": 1, "delay_ms": 50, "reason": "ValueError"},
                    )
                    store.add_history(
                        run_id, at + 0.01, "step_failed", step, {"error": _error(step)}
                    )
                    detail_run = detail_run or run_id
                    break
                op = "Sleep" if step == "cool-off" else "StepRun"
                store.memoize_step(
                    run_id,
                    f"h{number}",
                    {"data": {"step": step, "n": number}},
                    name=step,
                    op=op,
                    status="Completed",
                    now=at + 0.01,
                    started_at=at,
                )
                store.add_history(run_id, at + 0.01, "step_completed", step, {"duration_ms": 10})
                at += 0.02
            store.add_history(
                run_id,
                queued + 1.5,
                "failed" if failed else "completed",
                None,
                {"error": _error("charge")} if failed else {"output": output},
            )
        big_run = new_ulid(int(now * 1000))
        store.insert_run(
            RunRow(
                big_run,
                FUNCTIONS[0],
                "bench-app",
                event_id,
                [event],
                "Completed",
                {"ok": True},
                None,
                now - 60,
                now - 60,
                now - 1,
                False,
                0,
                4,
                None,
            )
        )
        for number in range(BIG_RUN_STEPS):
            at = now - 60 + number * 0.25
            store.memoize_step(
                big_run,
                f"b{number}",
                {"data": {"item": number, "pad": "y" * 100}},
                name=f"item-{number}",
                op="StepRun",
                status="Completed",
                now=at + 0.2,
                started_at=at,
            )
            store.add_history(
                big_run, at + 0.2, "step_completed", f"item-{number}", {"duration_ms": 200}
            )
    store.close()
    return detail_run, big_run


def _time(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    for _ in range(3):
        client.get(path).raise_for_status()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[max(0, round(0.95 * len(samples)) - 1)], 2),
        "max_ms": round(samples[-1], 2),
        "bytes": len(response.content),
    }


def measure(runs: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ui.db"
        began = time.perf_counter()
        detail, big = fill(db, runs)
        filled_s = time.perf_counter() - began
        with (
            EngineThread(db, port=0) as engine,
            httpx.Client(base_url=engine.url, timeout=30) as client,
        ):
            cases = {
                "GET /health (HTTP floor)": "/health",
                "runs page (50 newest)": "/",
                "runs page, filtered (Failed, one function, 7d)": "/?status=Failed&function=bench-refund&since=7d",
                "runs page, 20th page": None,
                "run detail page (failed run: 2 steps, a retry, 8-frame stack)": f"/runs/{detail}",
                f"run detail page ({BIG_RUN_STEPS} steps)": f"/runs/{big}",
                "events page (50 newest)": "/events",
                "GET /v1/runs?limit=50 (JSON)": "/v1/runs?limit=50",
                "GET /v1/runs/{id} (JSON)": f"/v1/runs/{detail}",
            }
            cursor: str | None = ""
            for _ in range(19):  # the 20th page, or the last one of a small history
                page = client.get(f"/v1/runs?limit=50&cursor={cursor}").json()["metadata"]
                if page["next_cursor"] is None:
                    break
                cursor = page["next_cursor"]
            cases["runs page, 20th page"] = f"/?cursor={cursor}"
            results = {name: _time(client, path, repeat) for name, path in cases.items() if path}
    return {
        "runs": runs,
        "repeat": repeat,
        "fill_seconds": round(filled_s, 1),
        "target_ms": TARGET_MS,
        "results": results,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"With {result['runs']:,} runs in the database (median / p95 of {result['repeat']}"
        " loads, ms; request to last byte over loopback):",
        "",
        "| page | median | p95 | size |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, cell in result["results"].items():
        lines.append(
            f"| {name} | {cell['median_ms']:.1f} | {cell['p95_ms']:.1f} |"
            f" {cell['bytes'] / 1024:.0f} KiB |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui_render", description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000, help="runs to put in the database")
    parser.add_argument("--repeat", type=int, default=50, help="timed loads per page")
    add_out_options(parser)
    args = parser.parse_args(argv)
    result = measure(args.runs, args.repeat)
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ui_render.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    pages = [c for n, c in result["results"].items() if "page" in n]
    worst = max(c["p95_ms"] for c in pages)
    verdict = "meets" if worst < TARGET_MS else "MISSES"
    print(f"\nslowest page p95 {worst:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
