"""LoggingMiddleware end to end: five-step functions driven to completion by the embedded engine,
served by the ASGI adapter under uvicorn and by ``CommHandler.handle_sync`` behind a WSGI server.
Every line the handler logs must appear exactly once per run."""

from __future__ import annotations

import logging
import socketserver
import threading
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from engine_support import AppServer, run_for_event, send, sync
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_logging import LoggingMiddleware

import inngest_mw
from inngest_mw import CommHandler, CommRequest, Context, ContextSync, Event, TriggerEvent

STEPS = 5
EXPECTED = [
    "start",
    *(line for i in range(1, STEPS + 1) for line in (f"in s{i}", f"after s{i}")),
    "done",
]
EXPECTED.insert(EXPECTED.index("after s2") + 1, "after send")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)  # list.append is atomic; handlers run in several threads

    def of_run(self, run_id: str) -> list[logging.LogRecord]:
        return [r for r in list(self.records) if getattr(r, "inngest_run_id", None) == run_id]


def five_steps_async(client: inngest_mw.Inngest) -> inngest_mw.Function[Any]:
    @client.create_function(fn_id="five", trigger=TriggerEvent(event="log/five"))
    async def five(ctx: Context) -> int:
        ctx.logger.info("start")
        total = 0
        for i in range(1, STEPS + 1):

            def work(i: int = i) -> int:
                ctx.logger.info(f"in s{i}")
                return i

            total += await ctx.step.run(f"s{i}", work)
            ctx.logger.info(f"after s{i}")
            if i == 2:
                await client.send(Event(name="log/nobody-listens"))
                ctx.logger.info("after send")
        ctx.logger.info("done")
        return total

    return five


def five_steps_sync(client: inngest_mw.Inngest, event: str) -> inngest_mw.Function[Any]:
    @client.create_function(fn_id="five-sync", trigger=TriggerEvent(event=event))
    def five_sync(ctx: ContextSync) -> int:
        ctx.logger.info("start")
        total = 0
        for i in range(1, STEPS + 1):

            def work(i: int = i) -> int:
                ctx.logger.info(f"in s{i}")
                return i

            total += ctx.step.run(f"s{i}", work)
            ctx.logger.info(f"after s{i}")
            if i == 2:
                client.send_sync(Event(name="log/nobody-listens"))
                ctx.logger.info("after send")
        ctx.logger.info("done")
        return total

    return five_sync


def failing(client: inngest_mw.Inngest) -> inngest_mw.Function[Any]:
    @client.create_function(fn_id="failing", trigger=TriggerEvent(event="log/failing"), retries=1)
    async def fn(ctx: Context) -> None:
        def work() -> None:
            raise ValueError(f"attempt {ctx.attempt}")

        await ctx.step.run("work", work)

    return fn


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output free of access logs."""


def wsgi_app(handler: CommHandler) -> Callable[..., Iterable[bytes]]:
    """A minimal WSGI adapter over ``handle_sync``: the sync entry point, over real HTTP."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        request = CommRequest(
            environ["REQUEST_METHOD"], wsgiref.util.request_uri(environ), headers, body, environ
        )
        response = handler.handle_sync(request)
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, list(response.headers.items()))
        return [response.body]

    return app


@dataclass
class Env:
    url: str
    records: Collect


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    collect = Collect()
    logger = logging.getLogger("tests.inngest_mw_logging")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(collect)
    db = Path(tmp_path_factory.mktemp("logging")) / "engine.db"
    try:
        with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:

            def client(app_id: str) -> inngest_mw.Inngest:
                return inngest_mw.Inngest(
                    app_id=app_id,
                    is_production=False,
                    api_base_url=engine.url,
                    event_api_base_url=engine.url,
                    logger=logger,
                    middleware=[LoggingMiddleware],
                )

            asgi_client, wsgi_client = client("logs-asgi"), client("logs-wsgi")
            asgi_fns = [
                five_steps_async(asgi_client),
                five_steps_sync(asgi_client, "log/five-sync"),
                failing(asgi_client),
            ]
            wsgi = make_server(
                "127.0.0.1",
                0,
                wsgi_app(
                    CommHandler(
                        wsgi_client,
                        [five_steps_sync(wsgi_client, "log/five-wsgi")],
                        framework="wsgi",
                    )
                ),
                server_class=_ThreadingWSGIServer,
                handler_class=_QuietHandler,
            )
            thread = threading.Thread(target=wsgi.serve_forever, daemon=True)
            thread.start()
            try:
                with AppServer(serve(asgi_client, asgi_fns)) as app:
                    sync(app)
                    synced = httpx.put(
                        f"http://127.0.0.1:{wsgi.server_port}/api/inngest", timeout=10
                    )
                    assert synced.status_code == 200, synced.text
                    yield Env(engine.url, collect)
            finally:
                wsgi.shutdown()
                thread.join(10)
    finally:
        logger.removeHandler(collect)


def messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


@pytest.mark.parametrize(
    ("event", "app_id"),
    [
        ("log/five", "logs-asgi"),  # async function, async server
        ("log/five-sync", "logs-asgi"),  # sync function in a worker thread of an async server
        ("log/five-wsgi", "logs-wsgi"),  # sync function, sync entry point
    ],
)
def test_each_handler_line_is_logged_exactly_once_per_run(
    env: Env, event: str, app_id: str
) -> None:
    [event_id] = send(env.url, {"name": event, "data": {}})
    run = run_for_event(env.url, event_id)
    assert (run["status"], run["output"]) == ("Completed", sum(range(1, STEPS + 1)))
    records = env.records.of_run(run["run_id"])
    assert messages(records) == EXPECTED
    assert {r.inngest_app_id for r in records} == {app_id}  # type: ignore[attr-defined]
    steps = {r.getMessage(): getattr(r, "inngest_step_id", None) for r in records}
    assert steps["in s3"] == "s3"
    assert steps["after s3"] is None
    assert {r.inngest_attempt for r in records} == {0}  # type: ignore[attr-defined]


def test_failures_are_logged_once_per_failed_attempt(env: Env) -> None:
    [event_id] = send(env.url, {"name": "log/failing", "data": {}})
    run = run_for_event(env.url, event_id)
    assert run["status"] == "Failed"
    records = env.records.of_run(run["run_id"])
    assert [(r.levelname, r.getMessage()) for r in records] == [
        (
            "WARNING",
            "step 'work' failed on attempt 0 and will be retried: ValueError: attempt 0",
        ),
        ("ERROR", "step 'work' failed on attempt 1: ValueError: attempt 1"),
        ("ERROR", "function 'logs-asgi-failing' failed on attempt 0: StepError: attempt 1"),
    ]
    assert records[1].exc_info is not None
    assert records[1].inngest_step_id == "work"  # type: ignore[attr-defined]
