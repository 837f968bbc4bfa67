"""The ``inngest-mw`` command line: run the engine (``dev``), send and invoke, inspect and control runs.

Each subcommand is declared in ``build_parser`` with a description, and its defaults shown in --help.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from inngest_mw.settings import resolve
from inngest_mw.signature import hash_signing_key
from inngest_mw_dev import cliargs
from inngest_mw_dev.dbfile import UnusableDatabaseError
from inngest_mw_dev.engine import Engine
from inngest_mw_dev.hooks_view import hook_lines
from inngest_mw_dev.livelog import LiveLog
from inngest_mw_dev.render import describe, format_ms, preview
from inngest_mw_dev.stacks import error_lines, read_error

__all__ = ["ApiError", "build_parser", "main", "print_run"]

DEFAULT_URL = "http://127.0.0.1:8288"
DEFAULT_DB = os.path.join(".inngest-mw", "engine.db")


def _short(iso: str | None, *, ms: bool = False) -> str:
    """An API timestamp in local time: ``YYYY-MM-DD HH:MM:SS``, or ``HH:MM:SS.mmm`` with ms."""
    if not iso:
        return "-"
    local = dt.datetime.fromisoformat(iso).astimezone()
    return local.strftime("%H:%M:%S.%f")[:-3] if ms else local.strftime("%Y-%m-%d %H:%M:%S")


async def _serve(args: argparse.Namespace) -> int:
    live = LiveLog(sys.stdout)
    engine = Engine(
        args.db,
        host=args.host,
        port=args.port,
        signing_key=args.signing_key,
        event_keys=args.event_key,
        app_urls=args.url,
        poll_interval=args.poll_interval,
        retry_base=args.retry_base,
        on_history=live.note,
        on_notice=live.notice,
        connect_port=args.connect_port,
    )
    try:
        await engine.start()
    except OSError as exc:
        port, option = getattr(exc, "port", args.port), getattr(exc, "option", "--port")
        print(f"error: {_listen_error(args.host, port, exc, option)}", file=sys.stderr)
        return 1
    live.flush()  # what start-up logged comes before the banner
    # What start-up made (modules, functions, the app's routes) lives as long as the process:
    # kept out of every collection, it is not traversed again each time the runs' garbage is.
    gc.freeze()
    print(
        f"inngest-mw engine ({engine.server_kind}) listening on {engine.url}, db {args.db}",
        flush=True,
    )
    print(
        f"web UI: {engine.url}/   apps reach this engine with INNGEST_DEV={engine.url}", flush=True
    )
    if engine.sign_in_code:
        print(
            f"web UI sign-in code: {engine.sign_in_code}   (enter it, or the signing key, at "
            f"{engine.url}/login; it changes on every start)",
            flush=True,
        )
    if engine.connect is not None:
        print(f"connect gateway: {engine.connect.endpoint}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await engine.stop()
        live.flush()
    return 0


def _listen_error(host: str, port: int, exc: OSError, option: str = "--port") -> str:
    """Why the engine could not listen on ``host:port``, and what to do, in one sentence."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another engine?); stop what holds it"
            f" or give another port with {option} (0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; give a port above 1023 with {option}"
    reason = exc.strerror or str(exc)
    return (
        f"cannot listen on {host}:{port} ({reason}); give an address of this machine with"
        " --host, e.g. 127.0.0.1 or 0.0.0.0"
    )


def _cmd_dev(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(args))


class ApiError(Exception):
    """The engine refused a request; the message is its reason, ready to print."""


def _request(args: argparse.Namespace, method: str, path: str, body: object = None) -> Any:
    headers = {}
    if args.signing_key:
        headers["Authorization"] = f"Bearer {hash_signing_key(args.signing_key)}"
    response = httpx.request(
        method, args.api.rstrip("/") + path, headers=headers, timeout=10, json=body
    )
    if response.status_code != 200:
        try:
            reason = response.json().get("error")
        except ValueError:
            reason = None
        raise ApiError(reason or f"the engine answered {response.status_code} to {path}")
    return response.json()["data"]


def _get(args: argparse.Namespace, path: str) -> Any:
    return _request(args, "GET", path)


def _filter_query(args: argparse.Namespace) -> dict[str, str]:
    query = {"function": args.function, "since": args.since, "until": args.until}
    if getattr(args, "status", None):
        query["status"] = ",".join(args.status)
    return {k: v for k, v in query.items() if v}


def _cmd_runs(args: argparse.Namespace) -> int:
    query = {**_filter_query(args), "limit": str(args.limit)}
    runs = _get(args, "/v1/runs?" + urlencode(query))
    if not runs:
        print("no runs match" if len(query) > 1 else "no runs yet")
        return 0
    print(f"{'RUN ID':<28}{'FUNCTION':<36}{'STATUS':<11}{'STARTED':<21}OUTPUT")
    for run in runs:
        if run["status"] == "Completed":
            result = preview(run["output"], 40)
        else:
            result = read_error(run["error"]).headline[:40] if run["error"] else "-"
        print(
            f"{run['run_id']:<28}{run['function_id']:<36}{run['status']:<11}"
            f"{_short(run['run_started_at']):<21}{result}"
        )
    return 0


def _cmd_workers(args: argparse.Namespace) -> int:
    apps = [app for app in _get(args, "/v1/apps") if app.get("workers")]
    if not apps:
        print("no connect workers are connected")
        return 0
    print(
        f"{'APP':<24}{'INSTANCE':<24}{'CONNECTION':<28}{'STATUS':<10}{'IN FLIGHT':>9}"
        f"{'SERVED':>8}  CONNECTED"
    )
    for app in apps:
        for worker in app["workers"]:
            print(
                f"{app['name']:<24}{worker['instance_id'][:23]:<24}"
                f"{worker['connection_id']:<28}{worker['status']:<10}"
                f"{worker['in_flight']:>9}{worker['served']:>8}"
                f"  {_short(worker['connected_at'])}"
            )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    print_run(_get(args, f"/v1/runs/{quote(args.run_id, safe='')}"))
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    data = args.data
    key = quote(args.event_key, safe="")
    headers = {}
    if args.signing_key:
        headers["Authorization"] = f"Bearer {hash_signing_key(args.signing_key)}"
    response = httpx.post(
        f"{args.api.rstrip('/')}/e/{key}",
        json={"name": args.name, "data": data},
        headers=headers,
        timeout=10,
    )
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if response.status_code != 200:
        raise ApiError(body.get("error") or f"the engine answered {response.status_code}")
    for event_id in body["ids"]:
        print(f"sent {args.name}  event {event_id}")
    return 0


def _cmd_invoke(args: argparse.Namespace) -> int:
    data = args.data
    started = _request(
        args, "POST", f"/v1/functions/{quote(args.function, safe='')}/invoke", {"data": data}
    )
    print(f"invoked {args.function}  run {started['run_id']}  event {started['event_id']}")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    if args.run_id:
        if args.function or args.since or args.until:
            raise ApiError("give either a run ID or --function with --since/--until, not both")
        done = _request(args, "POST", f"/v1/runs/{quote(args.run_id, safe='')}/cancel")
        print(f"cancelled run {done['run_id']}")
        return 0
    if not args.function:
        raise ApiError("give a run ID, or --function (with --since/--until) to cancel in bulk")
    cancelled = _request(args, "POST", "/v1/runs/cancel", _filter_query(args))["cancelled"]
    print(f"cancelled {len(cancelled)} running run(s) of {args.function}")
    for run_id in cancelled:
        print(f"  {run_id}")
    return 0


def _cmd_signal(args: argparse.Namespace) -> int:
    resumed = _request(args, "POST", "/v1/signals", {"signal": args.signal, "data": args.data})
    print(f"signal {args.signal} resumed run {resumed['run_id']}")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    body = {"from_step": args.from_step} if args.from_step else {}
    started = _request(args, "POST", f"/v1/runs/{quote(args.run_id, safe='')}/rerun", body)
    replayed = started["replayed"]
    extra = f" ({len(replayed)} earlier step(s) replayed from memory)" if args.from_step else ""
    print(f"rerun started: run {started['run_id']}{extra}")
    return 0


def _took(run: dict[str, Any]) -> str:
    """``  took 1.17s``: from the run's start to its end (nothing while it is still going)."""
    if not run.get("ended_at") or not run.get("run_started_at"):
        return ""
    started = dt.datetime.fromisoformat(run["run_started_at"])
    seconds = (dt.datetime.fromisoformat(run["ended_at"]) - started).total_seconds()
    return f"  took {format_ms(seconds * 1000)}"


def print_run(run: dict[str, Any]) -> None:
    """One run's steps, timeline and outcome, as ``inngest-mw run`` and the demo show it."""
    print(f"run {run['run_id']}  {run['function_id']}  {run['status']}")
    print(
        f"  event {run['event_id']}  started {_short(run['run_started_at'])}"
        f"  ended {_short(run['ended_at'])}{_took(run)}"
    )
    if run.get("rerun_of"):
        source = run["rerun_of"]
        frm = f" from step {source['from_step']}" if source.get("from_step") else ""
        print(f"  rerun of {source['run_id']}{frm}")
    if run["steps"]:
        print("steps:")
        print(
            f"  {'STEP':<28}{'KIND':<16}{'STATUS':<11}{'ATTEMPTS':>8}{'DURATION':>10}  "
            f"OUTPUT OR ERROR"
        )
        for step in run["steps"]:
            if "error" in step:
                result = read_error(step["error"]).headline
            else:
                result = preview(step.get("output"), 50)
            print(
                f"  {step['name']:<28}{step['op']:<16}{step['status']:<11}"
                f"{step['attempts']:>8}{format_ms(step['duration_ms']):>10}  "
                f"{result[:60]}"
            )
    _print_extras(run)
    print("timeline:")
    for entry in run["history"]:
        detail = {k: v for k, v in entry.items() if k not in ("at", "type", "step")}
        print(f"  {_short(entry['at'], ms=True)}  {describe(entry['type'], entry['step'], detail)}")
    if run.get("middleware"):
        print("middleware (the hooks the app's middleware ran, per request):")
        for line in hook_lines(run["middleware"]):
            print(line)
    if run["status"] == "Completed":
        print(f"output: {preview(run['output'], 400)}")
    elif run["error"] is not None:
        lines = error_lines(run["error"])
        print(f"error: {lines[0]}")
        for line in lines[1:]:
            print(line)


def _print_extras(run: dict[str, Any]) -> None:
    """The run's metadata and the spans its app exported (the v1 APIs), when it has any."""
    if run.get("metadata"):
        print("metadata:")
        for item in run["metadata"]:
            where = "run" if item["scope"] == "run" else f"{item['scope']} {item['step'] or ''}"
            print(f"  {item['kind']:<28}{where:<24}{preview(item['values'], 60)}")
    if run.get("user_spans"):
        print("spans from the app:")
        for span in run["user_spans"]:
            name = ("  " if span["parent_id"] else "") + span["name"]
            print(
                f"  {name:<28}{span['step'] or '':<24}{span['status']:<8}"
                f"{format_ms(span['duration_ms']):>10}"
            )


def _engine_url() -> str:
    """The engine the client commands talk to by default: the server an SDK in dev mode would
    reach from this environment (``INNGEST_DEV`` naming one, as the engine's start-up line tells
    apps to set it, or ``INNGEST_BASE_URL``), else the default port."""
    settings = resolve(
        is_production=False,
        api_base_url=None,
        event_api_base_url=None,
        signing_key=None,
        event_key=None,
        env=None,
    )
    return settings.api_origin.rstrip("/")


def _client_options() -> cliargs.OneLineParser:
    parent = cliargs.OneLineParser(add_help=False)
    parent.add_argument(
        "--url",
        dest="api",
        default=_engine_url(),
        type=cliargs.http_url,
        help="engine URL (env INNGEST_DEV, when it is a URL)",
    )
    parent.add_argument(
        "--signing-key",
        default=os.environ.get("INNGEST_SIGNING_KEY"),
        type=cliargs.signing_key,
        help="signing key when the engine requires one (env INNGEST_SIGNING_KEY)",
    )
    return parent


def _filter_options(parser: argparse.ArgumentParser, *, status: bool) -> None:
    parser.add_argument(
        "--function",
        default=None,
        metavar="FN",
        type=cliargs.text("a function ID or name"),
        help="only runs of this function (full ID, ID within its app, or name)",
    )
    parser.add_argument(
        "--since",
        default=None,
        metavar="TIME",
        type=cliargs.time_arg,
        help="queued at or after TIME: ISO 8601, epoch, or an age like 15m, 2h, 7d",
    )
    parser.add_argument(
        "--until", default=None, metavar="TIME", type=cliargs.time_arg, help="queued before TIME"
    )
    if status:
        parser.add_argument(
            "--status",
            action="append",
            default=None,
            choices=["running", "completed", "failed", "cancelled", "skipped"],
            help="only runs in this status (repeatable)",
        )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except empty ones and keys (never print a secret)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        empty = action.default in (None, False, [], argparse.SUPPRESS)
        if empty or "key" in action.dest or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = cliargs.OneLineParser(
        prog="inngest-mw",
        description="Run the inngest-mw engine, send events, and inspect and control its runs.",
        epilog="Run IDs may be shortened to any unique prefix. The web UI is at the engine URL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = _client_options()
    fmt = _HelpFormatter

    def command(name: str, summary: str, description: str, *, remote: bool = True) -> Any:
        return commands.add_parser(
            name,
            help=summary,
            description=description,
            parents=[client] if remote else [],
            formatter_class=fmt,
        )

    dev = command(
        "dev",
        "run the engine in the foreground",
        "Run the engine: its API, its web UI (open the URL in a browser) and a live log of"
        " every run and sync, all on one port.",
        remote=False,
    )
    dev.add_argument(
        "-u",
        "--url",
        action="append",
        default=[],
        metavar="APP_URL",
        type=cliargs.http_url,
        help="app serve URL to sync at start (repeatable)",
    )
    dev.add_argument(
        "--host",
        default="127.0.0.1",
        type=cliargs.text("an address to listen on, e.g. 127.0.0.1"),
        help="address to listen on",
    )
    dev.add_argument(
        "--port",
        type=cliargs.listen_port,
        default=8288,
        help="port for the API and the web UI (0: any free port)",
    )
    dev.add_argument(
        "--connect-port",
        type=cliargs.listen_port,
        default=8289,
        help="port of the connect gateway, where connect workers dial in (0: any free port)",
    )
    dev.add_argument(
        "--db",
        default=DEFAULT_DB,
        type=cliargs.text("a file path"),
        help="SQLite file (history survives restarts)",
    )
    dev.add_argument(
        "--signing-key",
        default=None,
        type=cliargs.signing_key,
        help="hex signing key, signkey-<env>- prefix optional: sign calls, auth API",
    )
    dev.add_argument(
        "--event-key",
        action="append",
        default=[],
        type=cliargs.event_key,
        help="accepted event key (repeatable; none means any key)",
    )
    dev.add_argument(
        "--poll-interval",
        type=cliargs.poll_seconds,
        default=None,
        help="re-sync the -u apps every N seconds (at least 1)",
    )
    dev.add_argument(
        "--retry-base",
        type=cliargs.retry_seconds,
        default=1.0,
        help="first retry delay in seconds (doubles per attempt; up to 3600)",
    )
    dev.set_defaults(handler=_cmd_dev)

    runs = command(
        "runs",
        "list recent runs, newest first",
        "List runs, newest first, optionally filtered by status, function and time.",
    )
    runs.add_argument(
        "--limit", type=cliargs.run_limit, default=20, help="how many runs to show (1-500)"
    )
    _filter_options(runs, status=True)
    runs.set_defaults(handler=_cmd_runs)

    workers = command(
        "workers",
        "list the connected connect workers",
        "List the workers connected over connect (outbound WebSocket), per app,"
        " with their state and the calls they are running.",
    )
    workers.set_defaults(handler=_cmd_workers)

    run = command(
        "run",
        "show one run's steps, timeline and error",
        "Show one run: its steps with durations, its timeline, and its output or error"
        " (with the stack, your own frame first).",
    )
    run.add_argument(
        "run_id",
        metavar="RUN",
        type=cliargs.text("a run ID or the start of one"),
        help="run ID or a unique prefix of it",
    )
    run.set_defaults(handler=_cmd_run)

    send = command(
        "send",
        "send an event",
        "Send one event to the engine, as an app's client.send() would; every function"
        " it triggers starts a run.",
    )
    send.add_argument(
        "name",
        metavar="NAME",
        type=cliargs.text("an event name, e.g. shop/checkout"),
        help="event name, e.g. shop/checkout",
    )
    send.add_argument(
        "--data", default="{}", type=cliargs.json_object, help="event data as a JSON object"
    )
    send.add_argument(
        "--event-key",
        default=os.environ.get("INNGEST_EVENT_KEY") or "NO_EVENT_KEY_SET",
        type=cliargs.event_key,
        help="event key (env INNGEST_EVENT_KEY)",
    )
    send.set_defaults(handler=_cmd_send)

    invoke = command(
        "invoke",
        "start a run of a function directly",
        "Start a run of one function now with the given data, whatever its"
        " triggers (flow control other than concurrency is bypassed).",
    )
    invoke.add_argument(
        "function",
        metavar="FN",
        type=cliargs.text("a function ID or name"),
        help="function: full ID, ID within its app, or name",
    )
    invoke.add_argument(
        "--data",
        default="{}",
        type=cliargs.json_object,
        help="the run's event data as a JSON object",
    )
    invoke.set_defaults(handler=_cmd_invoke)

    signal = command(
        "signal",
        "resume the run waiting for a signal",
        "Send a signal, as an app's client.send_signal() would: the run waiting for it in"
        " step.wait_for_signal resumes with the data.",
    )
    signal.add_argument(
        "signal",
        metavar="SIGNAL",
        type=cliargs.text("a signal name, e.g. approve-ticket-7"),
        help="the signal's name, as the run's wait_for_signal gave it",
    )
    signal.add_argument(
        "--data", default="null", type=cliargs.json_value, help="the signal's data, any JSON"
    )
    signal.set_defaults(handler=_cmd_signal)

    cancel = command(
        "cancel",
        "cancel a run, or a function's runs in a time range",
        "Cancel one running run, or with --function every running run of that"
        " function (narrowed by --since/--until).",
    )
    cancel.add_argument(
        "run_id",
        metavar="RUN",
        nargs="?",
        default=None,
        type=cliargs.text("a run ID or the start of one"),
        help="run ID or a unique prefix of it",
    )
    _filter_options(cancel, status=False)
    cancel.set_defaults(handler=_cmd_cancel)

    rerun = command(
        "rerun",
        "start a new run with the same event(s)",
        "Start a new run of the run's function with the same event(s). With"
        " --from-step, the steps that finished before that step are replayed from the"
        " original run's outputs (their code is not called again).",
    )
    rerun.add_argument(
        "run_id",
        metavar="RUN",
        type=cliargs.text("a run ID or the start of one"),
        help="run ID or a unique prefix of it",
    )
    rerun.add_argument(
        "--from-step",
        default=None,
        metavar="STEP",
        type=cliargs.text("a step name or ID"),
        help="step name or ID to restart from (default: from the beginning)",
    )
    rerun.set_defaults(handler=_cmd_rerun)

    demo = command(
        "demo",
        "engine + example app + an event -> a finished run",
        "Start the engine and the example shop app on free ports, send one"
        " shop/checkout event and print the finished run.",
        remote=False,
    )
    demo.add_argument(
        "--db",
        default=None,
        type=cliargs.text("a file path"),
        help="SQLite file (default: a temporary file)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from inngest_mw_dev.demo import run_demo

    return run_demo(args.db)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except UnusableDatabaseError as exc:  # dev and demo: a --db the engine cannot work with
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        where = getattr(args, "api", DEFAULT_URL)
        print(
            f"error: cannot reach the engine at {where} ({exc}); is `inngest-mw dev` running?",
            file=sys.stderr,
        )
        return 1
    return code
