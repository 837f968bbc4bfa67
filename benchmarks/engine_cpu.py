"""Engine CPU per step request, runs per second and intake under load, against a baseline engine.

``python -m benchmarks.engine_cpu [--baseline-engine PATH]`` runs the engine (``inngest-mw dev``)
and an inngest-mw app (``benchmarks.step_app``, uvicorn, one worker) as two processes on
127.0.0.1, so each one's CPU time can be read from the OS. Per engine and repeat:

1. a warm-up of ``--warmup`` runs, then ``--runs`` events (in batches of 50) of a ``--steps``-step
   function; from the first send until the app has seen every run reach its end, the CPU time of
   both processes is sampled, and the app counts the call requests it served;
2. with ``--runs`` more runs executing (the app has started at least a fifth of them), ``--intake``
   events that trigger nothing are sent in batches of 50, one batch after another over one
   keep-alive connection; the intake time is from the first batch sent to the last one's reply;
3. every event of step 1 must have started exactly one run, which completed, and every step of
   every run must have executed exactly once (``exact``).

With ``--baseline-engine`` (or ``INNGEST_MW_BASELINE_ENGINE``) set to another checkout (its
``.venv/bin/python`` is used) or to a Python interpreter that imports another ``inngest_mw_dev``,
that engine runs the same workload in the same invocation, repeats alternating between the two, and
the report gives ours / baseline ratios. The app always comes from this checkout.
``--profile FILE`` runs our engine under cProfile for one repeat and writes the profile there.
Linux only: CPU times come from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.output import add_out_options, out_dir
from benchmarks.step_app import EVENT, EVENT_IDLE, SERVE_PATH

__all__ = ["EngineSample", "main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
BATCH = 50
BASELINE_ENV = "INNGEST_MW_BASELINE_ENGINE"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One engine's figures for one repeat."""

    engine: str
    runs: int
    steps: int
    requests: int
    """Call requests the app served while the measured runs executed."""
    engine_cpu_s: float
    app_cpu_s: float
    wall_s: float
    intake_events: int
    intake_s: float
    running_during_intake: int
    """Runs of step 2 that had started but not finished when the intake ended."""
    exact: bool

    @property
    def engine_ms_per_request(self) -> float:
        return self.engine_cpu_s * 1000 / self.requests if self.requests else 0.0

    @property
    def app_ms_per_request(self) -> float:
        return self.app_cpu_s * 1000 / self.requests if self.requests else 0.0

    @property
    def cpu_ratio(self) -> float:
        """Engine CPU per step request / the app's CPU per step request."""
        return self.engine_cpu_s / self.app_cpu_s if self.app_cpu_s else 0.0

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.wall_s if self.wall_s else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@functools.cache
def _has_connect_port(python: str) -> bool:
    """Whether that interpreter's ``inngest-mw dev`` takes ``--connect-port``."""
    usage = subprocess.run(
        [python, "-m", "inngest_mw_dev", "dev", "--help"], capture_output=True, text=True
    )
    return "--connect-port" in usage.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def engine_python(path: str) -> str:
    """The interpreter for a ``--baseline-engine``: a checkout's ``.venv`` or an interpreter."""
    candidate = Path(path)
    if candidate.is_dir():
        for venv_python in (candidate / ".venv" / "bin" / "python", candidate / "bin" / "python"):
            if venv_python.exists():
                return str(venv_python)
        raise SystemExit(f"error: {path} has no .venv/bin/python; run 'python3 run.py lint' there")
    if not candidate.exists():
        raise SystemExit(f"error: baseline engine {path} does not exist")
    return str(candidate)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {process.returncode} at start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the {what} did not start within 30 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _processes(
    python: str, steps: int, profile: Path | None, app_args: Sequence[str] = ()
) -> Iterator[tuple[str, str, subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """The engine (``python``) and the app (this interpreter, given ``app_args`` too) running
    and synced."""
    with tempfile.TemporaryDirectory() as tmp:
        engine_port, app_port = _free_port(), _free_port()
        engine_url = f"http://127.0.0.1:{engine_port}"
        app_url = f"http://127.0.0.1:{app_port}"
        command = [python, "-m", "inngest_mw_dev", "dev", "--port", str(engine_port)]
        if _has_connect_port(python):  # engines before connect workers have no such option
            command += ["--connect-port", "0"]
        command += ["--db", str(Path(tmp) / "engine.db")]
        if profile is not None:
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
        quiet = {"stdout": subprocess.DEVNULL, "cwd": tmp}
        engine = subprocess.Popen(command, **quiet)  # type: ignore[call-overload]
        app: subprocess.Popen[bytes] | None = None
        try:
            _wait_until_up(f"{engine_url}/health", engine, "engine")
            app_command = [sys.executable, "-m", "benchmarks.step_app", "--port", str(app_port)]
            app_command += ["--engine", engine_url, "--steps", str(steps), *app_args]
            app = subprocess.Popen(app_command, cwd=ROOT, stdout=subprocess.DEVNULL)
            _wait_until_up(f"{app_url}/stats", app, "app")
            httpx.put(app_url + SERVE_PATH, timeout=30).raise_for_status()
            yield engine_url, app_url, engine, app
        finally:
            if app is not None:
                _stop(app)
            _stop(engine)


def _send(http: httpx.Client, name: str, first: int, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(first, first + count, BATCH):
        batch = [
            {"name": name, "data": {"n": n}}
            for n in range(start, min(start + BATCH, first + count))
        ]
        response = http.post("/e/bench-key", json=batch)
        response.raise_for_status()
        ids += response.json()["ids"]
    return ids


def _stats(app: httpx.Client) -> dict[str, Any]:
    stats: dict[str, Any] = app.get("/stats").json()
    return stats


def _wait_for(app: httpx.Client, key: str, at_least: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    stats = _stats(app)
    while stats[key] < at_least:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: the app saw {stats[key]} {key}, expected {at_least}")
        time.sleep(0.02)
        stats = _stats(app)
    return stats


def measure(
    label: str,
    python: str,
    *,
    runs: int,
    steps: int,
    warmup: int,
    intake: int,
    timeout: float,
    profile: Path | None = None,
) -> EngineSample:
    """Run the workload once against the engine ``python`` starts (see the module docstring)."""
    with (
        _processes(python, steps, profile) as (engine_url, app_url, engine, app),
        httpx.Client(base_url=engine_url, timeout=60) as http,
        httpx.Client(base_url=app_url, timeout=60) as app_http,
    ):
        _send(http, EVENT, 0, warmup)
        before = _wait_for(app_http, "finished", warmup, timeout)
        engine_cpu, app_cpu = cpu_seconds(engine.pid), cpu_seconds(app.pid)
        start = time.time()
        ids = _send(http, EVENT, warmup, runs)
        after = _wait_for(app_http, "finished", warmup + runs, timeout)
        engine_cpu = cpu_seconds(engine.pid) - engine_cpu
        app_cpu = cpu_seconds(app.pid) - app_cpu
        wall = float(after["last_finished_at"]) - start

        _send(http, EVENT, warmup + runs, runs)
        _wait_for(app_http, "started", warmup + runs + max(1, runs // 5), timeout)
        http.get("/health")  # the connection is open before the clock starts
        began = time.perf_counter()
        _send(http, EVENT_IDLE, 0, intake)
        intake_s = time.perf_counter() - began
        during = _stats(app_http)
        running = during["started"] - during["finished"]

        final = _wait_for(app_http, "finished", warmup + 2 * runs, timeout)
        per_event = [len(http.get(f"/v1/events/{i}/runs").json()["data"]) for i in ids]
        completed = [
            run["status"] == "Completed"
            for i in ids
            for run in http.get(f"/v1/events/{i}/runs").json()["data"]
        ]
    exact = (
        all(count == 1 for count in per_event)
        and len(completed) == runs
        and all(completed)
        and final["duplicated_steps"] == 0
        and final["distinct_steps"] == (warmup + 2 * runs) * steps
    )
    return EngineSample(
        engine=label,
        runs=runs,
        steps=steps,
        requests=after["requests"] - before["requests"],
        engine_cpu_s=round(engine_cpu, 3),
        app_cpu_s=round(app_cpu, 3),
        wall_s=round(wall, 3),
        intake_events=intake,
        intake_s=round(intake_s, 4),
        running_during_intake=running,
        exact=exact,
    )


def _median(samples: list[EngineSample], attribute: str) -> float:
    return statistics.median(float(getattr(s, attribute)) for s in samples)


_COLUMNS = (
    ("engine CPU s", "engine_cpu_s"),
    ("app CPU s", "app_cpu_s"),
    ("engine ms/request", "engine_ms_per_request"),
    ("app ms/request", "app_ms_per_request"),
    ("engine/app CPU", "cpu_ratio"),
    ("runs/s", "runs_per_second"),
    ("intake s", "intake_s"),
)


def report(by_engine: dict[str, list[EngineSample]]) -> str:
    """A markdown table of the medians per engine, and ours / baseline where both ran."""
    first = next(iter(by_engine.values()))[0]
    lines = [
        f"{first.runs} runs x {first.steps} steps; intake: {first.intake_events} events in batches"
        f" of {BATCH} while {first.runs} runs execute; medians of"
        f" {len(next(iter(by_engine.values())))} repeat(s)",
        "",
        "| engine | requests | " + " | ".join(name for name, _ in _COLUMNS) + " | exact |",
        "| --- | ---: | " + " | ".join("---:" for _ in _COLUMNS) + " | --- |",
    ]
    for label, samples in by_engine.items():
        cells = [f"{_median(samples, attr):.3f}" for _, attr in _COLUMNS]
        exact = "yes" if all(s.exact for s in samples) else "**no**"
        requests = f"{_median(samples, 'requests'):.0f}"
        lines.append(f"| {label} | {requests} | " + " | ".join(cells) + f" | {exact} |")
    ours = by_engine.get("ours") or next(iter(by_engine.values()))
    targets = [
        ("engine CPU / app CPU per step request", _median(ours, "cpu_ratio"), "<= 1.0", 1.0, True),
        (
            f"intake of {first.intake_events} events under load, s",
            _median(ours, "intake_s"),
            "<= 0.3",
            0.3,
            True,
        ),
    ]
    if "baseline" in by_engine and "ours" in by_engine:
        base = by_engine["baseline"]

        def ratio(attribute: str) -> float:
            return _median(ours, attribute) / (_median(base, attribute) or 1.0)

        targets += [
            ("runs/s, ours / baseline", ratio("runs_per_second"), ">= 1.7", 1.7, False),
            (
                "engine CPU per request, ours / baseline",
                ratio("engine_ms_per_request"),
                "",
                0,
                True,
            ),
            ("intake time, ours / baseline", ratio("intake_s"), "", 0, True),
        ]
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | --- | --- |"]
    for name, value, goal, bound, at_most in targets:
        met = (
            ""
            if not goal
            else "yes"
            if (value <= bound if at_most else value >= bound)
            else "**no**"
        )
        lines.append(f"| {name} | {value:.3f} | {goal} | {met} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_cpu", description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--intake", type=int, default=500, help="events sent under load")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--baseline-engine",
        default=os.environ.get(BASELINE_ENV),
        metavar="PATH",
        help=f"checkout or interpreter of the engine to compare with (env {BASELINE_ENV})",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="run our engine under cProfile once and write the profile to FILE",
    )
    add_out_options(parser)
    args = parser.parse_args(argv)
    options = {
        "runs": args.runs,
        "steps": max(1, args.steps),
        "warmup": args.warmup,
        "intake": args.intake,
        "timeout": args.timeout,
    }
    if args.profile is not None:
        sample = measure("ours", sys.executable, profile=args.profile.resolve(), **options)
        print(report({"ours (cProfile)": [sample]}))
        return 0 if sample.exact else 1
    engines = {"ours": sys.executable}
    if args.baseline_engine:
        engines = {"baseline": engine_python(args.baseline_engine), **engines}
    by_engine: dict[str, list[EngineSample]] = {label: [] for label in engines}
    for _ in range(max(1, args.repeat)):
        for label, python in engines.items():
            sample = measure(label, python, **options)
            by_engine[label].append(sample)
            print(f"{label}: {sample}", file=sys.stderr, flush=True)
    text = report(by_engine)
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    payload = {label: [asdict(s) for s in samples] for label, samples in by_engine.items()}
    (out / "engine_cpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / "engine_cpu.md").write_text(text + "\n")
    print(text)
    return 0 if all(s.exact for samples in by_engine.values() for s in samples) else 1


if __name__ == "__main__":
    raise SystemExit(main())
