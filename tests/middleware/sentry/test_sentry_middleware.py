"""SentryMiddleware end to end: the real sentry-sdk with an in-memory transport, apps under uvicorn
driven by the embedded engine through retries, final failures and concurrent runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from engine_support import AppServer, run_for_event, runs_for_event, send, sync, wait_run
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_sentry import SentryMiddleware
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent


class RecordingTransport(Transport):
    """Keeps every envelope the SDK would send, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        with self.lock:
            self.envelopes.append(envelope)

    def items(self, kind: str, run_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            payloads = [
                item.payload.json
                for envelope in self.envelopes
                for item in envelope.items
                if item.type == kind and item.payload.json is not None
            ]
        return [p for p in payloads if run_id is None or p["tags"].get("inngest.run.id") == run_id]


@dataclass
class Env:
    url: str
    transport: RecordingTransport


def build(client: inngest_mw.Inngest, barrier: threading.Barrier) -> list[inngest_mw.Function[Any]]:
    create = client.create_function
    default = [SentryMiddleware]

    @create(fn_id="flaky", trigger=TriggerEvent(event="s/flaky"), retries=2, middleware=default)
    async def flaky(ctx: Context) -> str:
        await ctx.step.run("first", lambda: 1)
        if ctx.attempt < 2:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return "ok"

    @create(
        fn_id="flaky-step",
        trigger=TriggerEvent(event="s/flaky-step"),
        retries=2,
        middleware=default,
    )
    def flaky_step(ctx: ContextSync) -> str:
        def work() -> str:
            if ctx.attempt < 2:
                raise RuntimeError(f"step attempt {ctx.attempt} fails")
            return "ok"

        return ctx.step.run("work", work)

    @create(fn_id="doomed", trigger=TriggerEvent(event="s/doomed"), retries=1, middleware=default)
    async def doomed(ctx: Context) -> None:
        await ctx.step.run("first", lambda: 1)
        raise RuntimeError(f"doomed {ctx.run_id}")

    @create(fn_id="pair", trigger=TriggerEvent(event="s/pair"), retries=0, middleware=default)
    def pair(ctx: ContextSync) -> None:
        barrier.wait()  # both runs are inside their requests, tags set, at the same time
        raise inngest_mw.NonRetriableError(f"pair {ctx.run_id}")

    @create(
        fn_id="step-doomed",
        trigger=TriggerEvent(event="s/step-doomed"),
        retries=1,
        middleware=[SentryMiddleware.factory(capture_step_errors=True)],
    )
    async def step_doomed(ctx: Context) -> None:
        def work() -> None:
            raise ValueError(f"step doomed {ctx.run_id}")

        await ctx.step.run("work", work)

    return [flaky, flaky_step, doomed, pair, step_doomed]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    transport = RecordingTransport()
    previous = sentry_sdk.get_client()
    sentry_sdk.init(dsn="https://public@127.0.0.1/1", transport=transport, traces_sample_rate=1.0)
    barrier = threading.Barrier(2, timeout=10)
    db = Path(tmp_path_factory.mktemp("sentry")) / "engine.db"
    try:
        with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:
            client = inngest_mw.Inngest(
                app_id="sentry",
                is_production=False,
                api_base_url=engine.url,
                event_api_base_url=engine.url,
            )
            with AppServer(serve(client, build(client, barrier))) as app:
                sync(app)
                yield Env(engine.url, transport)
    finally:
        sentry_sdk.get_global_scope().set_client(previous)


@pytest.mark.parametrize("name", ["s/flaky", "s/flaky-step"])
def test_a_run_that_fails_twice_then_succeeds_reports_nothing(env: Env, name: str) -> None:
    [event_id] = send(env.url, {"name": name, "data": {}})
    run = run_for_event(env.url, event_id)
    assert (run["status"], run["output"]) == ("Completed", "ok")
    assert env.transport.items("event", run["run_id"]) == []
    transactions = env.transport.items("transaction", run["run_id"])
    assert transactions, "each request still sends its transaction"
    assert {t["transaction"] for t in transactions} == {f"sentry-{name.removeprefix('s/')}"}


def test_a_run_failing_on_its_last_attempt_reports_one_error_with_tags(env: Env) -> None:
    [event_id] = send(env.url, {"name": "s/doomed", "data": {}})
    run = run_for_event(env.url, event_id)
    assert run["status"] == "Failed"
    [event] = env.transport.items("event", run["run_id"])
    assert event["tags"] == {
        "inngest.app.id": "sentry",
        "inngest.function.id": "sentry-doomed",
        "inngest.run.id": run["run_id"],
        "inngest.event.name": "s/doomed",
        "inngest.event.id": event_id,
        "inngest.attempt": "1",
    }
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", f"doomed {run['run_id']}")
    assert exception["mechanism"] == {"type": "inngest", "handled": False}
    crumbs = [c for c in event["breadcrumbs"]["values"] if c.get("category") == "inngest.step"]
    assert [(c["message"], c["data"]["memoized"]) for c in crumbs] == [("step first", True)]
    transactions = env.transport.items("transaction", run["run_id"])
    # With checkpointing (the default) the first attempt runs the step and fails in one request;
    # the second replays the step and fails again.
    assert [t["contexts"]["trace"]["status"] for t in transactions] == ["internal_error"] * 2
    step_spans = [s for t in transactions for s in t["spans"] if s["op"] == "inngest.step"]
    assert [s["description"] for s in step_spans] == ["first"], "one span, for the one execution"


def test_concurrent_runs_never_mix_tags(env: Env) -> None:
    event_ids = send(env.url, [{"name": "s/pair", "data": {"n": n}} for n in range(2)])
    runs = {}
    for event_id in event_ids:
        [run] = runs_for_event(env.url, event_id)
        runs[run["run_id"]] = event_id
    for run_id, event_id in runs.items():
        assert wait_run(env.url, run_id)["status"] == "Failed"
        [event] = env.transport.items("event", run_id)
        assert event["tags"]["inngest.event.id"] == event_id
        assert event["exception"]["values"][0]["value"] == f"pair {run_id}"
        for transaction in env.transport.items("transaction", run_id):
            assert transaction["tags"]["inngest.event.id"] == event_id


def test_step_errors_are_reported_once_when_enabled(env: Env) -> None:
    [event_id] = send(env.url, {"name": "s/step-doomed", "data": {}})
    run = run_for_event(env.url, event_id)
    assert run["status"] == "Failed"
    [event] = env.transport.items("event", run["run_id"])
    assert event["exception"]["values"][0]["type"] == "ValueError"
    assert event["tags"]["inngest.step.id"] == "work"
    assert event["tags"]["inngest.attempt"] == "1"
