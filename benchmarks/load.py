"""Load test: N events sent concurrently to the embedded engine must start exactly N runs.

``python -m benchmarks.load [--events 10000] [--senders 64] [--steps 2]`` starts the engine and an
inngest-mw app (uvicorn) on 127.0.0.1 in one process, sends the events from another (the senders,
``benchmarks.load_sender``, are the engine's clients, not part of what is measured), waits for every
run, then checks that each event started exactly one run, each step ran exactly once, and nothing
was lost. It prints throughput, run latency and the peak memory of the engine and app's process,
and writes ``load.json`` (``--out``/``--record``). Section 5 of ``python -m benchmarks`` drives the
same stack (``stack``, ``drive``).

With ``--baseline-engine PATH`` (or ``INNGEST_MW_BASELINE_ENGINE``; a checkout with a ``.venv``, or
an interpreter, as for ``benchmarks.engine_cpu``) each engine runs the load in a fresh process of
its own, ``--repeat`` times, alternating: ours with this interpreter, the baseline with that one,
importing everything but the engine (``inngest_mw_dev``) from this checkout, so the two peak
memory figures differ by the engine alone. It prints a table of the medians and writes both
engines' reports to ``load.json`` and the table to ``load.md``.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
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
from benchmarks.engine_cpu import BASELINE_ENV, engine_python
from benchmarks.load_sender import EVENT
from benchmarks.output import add_out_options, out_dir

ROOT = Path(__file__).resolve().parent.parent
ISSUE_PEAK_MIB = 73.0
"""The peak memory of this load test when issue 21 was filed, its ceiling."""


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
    """Side effects the app performs, per event number ``n`` and step index (thread-safe).

    The ledger is the load test's own bookkeeping inside the process whose peak memory it
    reports, so it is kept in flat arrays indexed ``n * steps + step`` (grown as numbers
    arrive), not in dicts keyed by tuples: at 10,000 runs of two steps, those dicts held about
    4 MiB of that peak."""

    def __init__(self, steps: int) -> None:
        self.width = steps
        self.last = steps - 1
        self.lock = threading.Lock()
        self._hits = bytearray()  # times each (n, step) ran, stopping at 255
        self._first = array.array("d")  # when each (n, step) first ran; 0.0: it has not
        self.finished = 0
        """Event numbers whose last step has run."""

    def hit(self, n: int, step: int) -> int:
        now = time.time()
        index = n * self.width + step
        with self.lock:
            if index >= len(self._hits):
                grow = index + 1 - len(self._hits) + _GROW_RUNS * self.width
                self._hits.extend(bytes(grow))
                self._first.frombytes(bytes(grow * self._first.itemsize))
            hits = self._hits[index]
            if hits < 255:
                self._hits[index] = hits + 1
            if not hits:
                self._first[index] = now
                if step == self.last:
                    self.finished += 1
        return n

    def first_hit(self, n: int, step: int) -> float | None:
        """When step ``step`` of event number ``n`` first ran (None if it has not)."""
        index = n * self.width + step
        return self._first[index] if index < len(self._hits) and self._hits[index] else None

    def finished_at(self) -> dict[int, float]:
        """Each event number whose last step has run, and when it first did."""
        return {
            index // self.width: self._first[index]
            for index in range(self.last, len(self._hits), self.width)
            if self._hits[index]
        }

    def steps_run(self) -> int:
        """How many (event number, step) pairs have run."""
        return len(self._hits) - self._hits.count(0)

    def duplicated_steps(self) -> int:
        """How many (event number, step) pairs ran more than once."""
        return self.steps_run() - self._hits.count(1)


_GROW_RUNS = 1024
"""Event numbers the ledger's arrays grow by past the highest seen."""


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


@dataclass
class Sent:
    """What ``drive`` did: each event number's event ID and send time, and the timings."""

    ids: dict[int, str]
    sent_at: dict[int, float]
    start: float
    send_seconds: float
    total_seconds: float


def _send(url: str, count: int, senders: int, timeout: float, report: Path) -> tuple[float, float]:
    """Send the events from a process of their own (``benchmarks.load_sender``), as separate
    clients would: their CPU and connections are not the engine's. It writes each event number's
    ID and send time to ``report``. When sending began (once the sender process had started up)
    and its seconds."""
    command = [sys.executable, "-m", "benchmarks.load_sender", url, str(count), str(senders)]
    child = subprocess.Popen(
        [*command, str(report)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the load test's sender process did not start")
        start = time.time()
        child.stdin.write("go\n")
        child.stdin.close()
        line = child.stdout.readline()
        if child.wait(timeout) != 0 or line.strip() != "sent":
            raise RuntimeError(f"the load test's sender process failed (exit {child.returncode})")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    return start, time.time() - start


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
    """Send ``events`` events concurrently; wait (up to ``timeout``) for every run's last step.
    The events' IDs and send times are read once the runs are done (see ``Ledger``)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "sent.json"
        start, send_seconds = _send(engine_url, events, senders, timeout, report)
        deadline = time.monotonic() + timeout
        while ledger.finished < events and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let any duplicate execution show itself
        total_seconds = time.time() - start
        sent = json.loads(report.read_text())
    ids = {int(n): event_id for n, event_id in sent["ids"].items()}
    sent_at = {int(n): at for n, at in sent["sent_at"].items()}
    return Sent(ids, sent_at, start, send_seconds, total_seconds)


def run_load(events: int, senders: int, timeout: float, steps: int = 2) -> LoadResult:
    with stack(steps) as (engine_url, ledger):
        sent = drive(engine_url, ledger, events, senders, timeout)
        with httpx.Client(base_url=engine_url, timeout=30) as http:
            runs_per_event = Counter(
                len(http.get(f"/v1/events/{i}/runs").json()["data"]) for i in sent.ids.values()
            )
    finished_at = ledger.finished_at()
    p50, p99 = percentiles([(at - sent.sent_at[n]) * 1000 for n, at in finished_at.items()])
    finished = len(finished_at)
    return LoadResult(
        events=events,
        steps=steps,
        runs=sum(count * runs for count, runs in runs_per_event.items()),
        lost=events - finished,
        duplicated_runs=sum(runs for count, runs in runs_per_event.items() if count > 1),
        duplicated_steps=ledger.duplicated_steps(),
        send_seconds=round(sent.send_seconds, 2),
        total_seconds=round(sent.total_seconds, 2),
        events_per_second=round(events / sent.send_seconds, 1),
        runs_per_second=round(finished / sent.total_seconds, 1),
        run_latency_p50_ms=p50,
        run_latency_p99_ms=p99,
        peak_rss_mib=peak_rss_mib(),
    )


def peak_rss_mib() -> float:
    """This process's peak resident memory: the engine's and the app's (the senders have a
    process of their own)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def in_child(
    python: str, *, events: int, senders: int, steps: int, timeout: float, baseline: bool
) -> dict[str, Any]:
    """One load in a fresh ``python`` process; its report. A baseline imports only its engine from
    its own checkout: this checkout's SDK, ASGI integration and load test come first on its path."""
    env = {k: v for k, v in os.environ.items() if k != BASELINE_ENV}
    if baseline:
        ours = [str(ROOT), str(ROOT / "integrations" / "asgi")]
        env["PYTHONPATH"] = os.pathsep.join([*ours, *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as tmp:
        command = [python, "-m", "benchmarks.load", "--events", str(events), "--out", tmp]
        command += ["--senders", str(senders), "--steps", str(steps), "--timeout", str(timeout)]
        subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        path = Path(tmp) / "load.json"
        if not path.exists():
            raise RuntimeError(f"the load test under {python} wrote no report")
        report: dict[str, Any] = json.loads(path.read_text())
        return report


_COLUMNS = (
    ("runs", "runs", "{:,.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("duplicated runs", "duplicated_runs", "{:.0f}"),
    ("duplicated steps", "duplicated_steps", "{:.0f}"),
    ("events/s (ingest)", "events_per_second", "{:.1f}"),
    ("runs/s", "runs_per_second", "{:.1f}"),
    ("total s", "total_seconds", "{:.1f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:.1f}"),
)


def _median(reports: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in reports)


def table(by_engine: dict[str, list[dict[str, Any]]]) -> str:
    """A markdown table of the medians per engine, and the peak memory targets."""
    first = next(iter(by_engine.values()))
    lines = [
        f"{first[0]['events']:,} events, {first[0]['steps']} steps; medians of {len(first)} run(s)",
        "",
        "| engine | " + " | ".join(name for name, _, _ in _COLUMNS) + " | exact |",
        "| --- | " + " | ".join("---:" for _ in _COLUMNS) + " | --- |",
    ]
    for label, reports in by_engine.items():
        cells = [form.format(_median(reports, key)) for _, key, form in _COLUMNS]
        exact = "yes" if all(r["exact"] for r in reports) else "**no**"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {exact} |")
    peak = _median(by_engine["ours"], "peak_rss_mib")
    targets = [(f"peak RSS, MiB (issue 21: {ISSUE_PEAK_MIB:g})", peak, ISSUE_PEAK_MIB)]
    if "baseline" in by_engine:
        base = _median(by_engine["baseline"], "peak_rss_mib")
        targets.append(("peak RSS, ours / baseline", peak / base, 1.0))
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | --- | --- |"]
    for name, value, bound in targets:
        met = "yes" if value <= bound else "**no**"
        lines.append(f"| {name} | {value:.3f} | <= {bound:g} | {met} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=64, help="concurrent HTTP senders")
    parser.add_argument("--steps", type=int, default=2, help="steps per run (at least 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the runs")
    parser.add_argument(
        "--baseline-engine",
        default=os.environ.get(BASELINE_ENV),
        metavar="PATH",
        help=f"checkout or interpreter of the engine to compare with (env {BASELINE_ENV})",
    )
    parser.add_argument("--repeat", type=int, default=1, help="loads per engine (with a baseline)")
    add_out_options(parser)
    args = parser.parse_args(argv)
    steps = max(1, args.steps)
    out = out_dir(args)
    if args.baseline_engine:
        engines = {"baseline": engine_python(args.baseline_engine), "ours": sys.executable}
        by_engine: dict[str, list[dict[str, Any]]] = {label: [] for label in engines}
        for _ in range(max(1, args.repeat)):
            for label, python in engines.items():
                options = {"events": args.events, "senders": args.senders, "steps": steps}
                report = in_child(
                    python, **options, timeout=args.timeout, baseline=label == "baseline"
                )
                by_engine[label].append(report)
                print(f"{label}: {report}", file=sys.stderr, flush=True)
        text = table(by_engine)
        out.mkdir(parents=True, exist_ok=True)
        (out / "load.json").write_text(json.dumps(by_engine, indent=2) + "\n")
        (out / "load.md").write_text(text + "\n")
        print(text)
        return 0 if all(r["exact"] for reports in by_engine.values() for r in reports) else 1
    result = run_load(args.events, args.senders, args.timeout, steps)
    report = asdict(result) | {"exact": result.exact}
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:>22}: {value}")
    return 0 if result.exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
