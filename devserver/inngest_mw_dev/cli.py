"""The ``inngest-mw`` command line: run the engine (``dev``) and inspect runs (``runs``, ``run``).

Subcommands register themselves in ``build_parser``; add new ones (e.g. ``demo``) there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from inngest_mw.signature import hash_signing_key
from inngest_mw_dev.engine import Engine
from inngest_mw_dev.machine import HistoryNote
from inngest_mw_dev.render import describe, format_ms, preview

__all__ = ["build_parser", "main", "print_run"]

DEFAULT_URL = "http://127.0.0.1:8288"
DEFAULT_DB = os.path.join(".inngest-mw", "engine.db")


def _clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def _short(iso: str | None, *, ms: bool = False) -> str:
    """An API timestamp in local time: ``YYYY-MM-DD HH:MM:SS``, or ``HH:MM:SS.mmm`` with ms."""
    if not iso:
        return "-"
    local = dt.datetime.fromisoformat(iso).astimezone()
    return local.strftime("%H:%M:%S.%f")[:-3] if ms else local.strftime("%Y-%m-%d %H:%M:%S")


def _print_note(note: HistoryNote) -> None:
    line = describe(note.kind, note.step, note.detail)
    print(f"{_clock(note.ts)}  {note.function_id:<32} {note.run_id}  {line}", flush=True)


async def _serve(args: argparse.Namespace) -> int:
    engine = Engine(
        args.db, host=args.host, port=args.port, signing_key=args.signing_key,
        event_keys=args.event_key, app_urls=args.url, poll_interval=args.poll_interval,
        retry_base=args.retry_base, on_history=_print_note,
    )  # fmt: skip
    try:
        await engine.start()
    except OSError as exc:
        print(f"error: cannot start the engine on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"inngest-mw engine ({engine.server_kind}) listening on {engine.url}, db {args.db}",
          flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await engine.stop()
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(args))


def _get(args: argparse.Namespace, path: str) -> Any:
    headers = {}
    if args.signing_key:
        headers["Authorization"] = f"Bearer {hash_signing_key(args.signing_key)}"
    response = httpx.get(args.api.rstrip("/") + path, headers=headers, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"error: {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()["data"]


def _cmd_runs(args: argparse.Namespace) -> int:
    runs = _get(args, f"/v1/runs?limit={args.limit}")
    if not runs:
        print("no runs yet")
        return 0
    print(f"{'RUN ID':<28}{'FUNCTION':<36}{'STATUS':<11}{'STARTED':<21}OUTPUT")
    for run in runs:
        result = run["error"] if run["status"] != "Completed" else run["output"]
        print(f"{run['run_id']:<28}{run['function_id']:<36}{run['status']:<11}"
              f"{_short(run['run_started_at']):<21}{preview(result, 40)}")  # fmt: skip
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    print_run(_get(args, f"/v1/runs/{args.run_id}"))
    return 0


def print_run(run: dict[str, Any]) -> None:
    """One run's steps, timeline and outcome, as ``inngest-mw run`` and the demo show it."""
    print(f"run {run['run_id']}  {run['function_id']}  {run['status']}")
    print(f"  event {run['event_id']}  started {_short(run['run_started_at'])}"
          f"  ended {_short(run['ended_at'])}")  # fmt: skip
    if run["steps"]:
        print("steps:")
        for step in run["steps"]:
            result = step.get("error", step.get("output"))
            print(f"  {step['name']:<28}{step['op']:<16}{step['status']:<11}"
                  f"x{step['attempts']:<3}{format_ms(step['duration_ms']):>9}  "
                  f"{preview(result, 50)}")  # fmt: skip
    print("timeline:")
    for entry in run["history"]:
        detail = {k: v for k, v in entry.items() if k not in ("at", "type", "step")}
        print(f"  {_short(entry['at'], ms=True)}  {describe(entry['type'], entry['step'], detail)}")
    if run["status"] == "Completed":
        print(f"output: {preview(run['output'], 400)}")
    elif run["error"] is not None:
        print(f"error: {preview(run['error'], 400)}")


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", dest="api", default=DEFAULT_URL, help="engine URL")
    parser.add_argument("--signing-key", default=os.environ.get("INNGEST_SIGNING_KEY"),
                        help="signing key when the engine requires one")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inngest-mw", description="Run the inngest-mw engine and inspect its runs."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the engine in the foreground")
    dev.add_argument("-u", "--url", action="append", default=[], metavar="APP_URL",
                     help="app serve URL to sync at start (repeatable)")  # fmt: skip
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8288)
    dev.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
    dev.add_argument("--signing-key", default=None, help="hex signing key: sign calls, auth API")
    dev.add_argument("--event-key", action="append", default=[], help="accepted event key")
    dev.add_argument("--poll-interval", type=float, default=None,
                     help="re-sync the -u apps every N seconds")  # fmt: skip
    dev.add_argument("--retry-base", type=float, default=1.0,
                     help="first retry delay in seconds (doubles per attempt)")  # fmt: skip
    dev.set_defaults(handler=_cmd_dev)

    runs = commands.add_parser("runs", help="list recent runs")
    _add_client_options(runs)
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(handler=_cmd_runs)

    run = commands.add_parser("run", help="show one run's steps and timeline")
    _add_client_options(run)
    run.add_argument("run_id")
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser("demo", help="engine + example app + an event -> a finished run")
    demo.add_argument("--db", default=None, help="SQLite file (default: a temporary file)")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from inngest_mw_dev.demo import run_demo

    return run_demo(args.db)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the engine: {exc}", file=sys.stderr)
        return 1
    return code
