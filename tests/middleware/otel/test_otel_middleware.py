"""OTelMiddleware end to end: apps under uvicorn driven by the embedded engine, real OTel SDK.

Span model under test: one ``inngest.request`` span per call request (all of a run in one trace),
one ``inngest.step <id>`` span per executed step attempt, one ``send <event>`` span per send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from engine_support import AppServer, poll, run_for_event, send, sync
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_otel import OTelMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support import call_body

import inngest_mw
from inngest_mw import Context, ContextSync, Event, TriggerEvent


@dataclass
class Env:
    url: str
    app_url: str
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


def three_steps(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    """The same three-step function in both colours, on events named after the app."""
    create = client.create_function
    app = client.app_id

    @create(fn_id="three", trigger=TriggerEvent(event=f"{app}/three"))
    async def three(ctx: Context) -> int:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: a + 1)
        return a + b + await ctx.step.run("c", lambda: b + 1)

    @create(fn_id="three-sync", trigger=TriggerEvent(event=f"{app}/three-sync"))
    def three_sync(ctx: ContextSync) -> int:
        a = ctx.step.run("a", lambda: 1)
        b = ctx.step.run("b", lambda: a + 1)
        return a + b + ctx.step.run("c", lambda: b + 1)

    return [three, three_sync]


def build(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="child", trigger=TriggerEvent(event="otel/child"))
    def child(ctx: ContextSync) -> int:
        return ctx.step.run("double", lambda: int(ctx.event.data["value"]) * 2)

    @create(fn_id="parent", trigger=TriggerEvent(event="otel/parent"))
    async def parent(ctx: Context) -> int:
        return await ctx.step.invoke("call", function=child, data={"value": 21})

    @create(fn_id="sender", trigger=TriggerEvent(event="otel/send"))
    async def sender(ctx: Context) -> list[str]:
        return await ctx.step.send_event("emit", Event(name="otel/received", data={"n": 1}))

    @create(fn_id="direct-sender", trigger=TriggerEvent(event="otel/send-direct"))
    async def direct_sender(ctx: Context) -> list[str]:
        return await client.send(Event(name="otel/received-direct"))

    @create(fn_id="receiver", trigger=TriggerEvent(event="otel/received"))
    async def receiver(ctx: Context) -> str:
        return await ctx.step.run("r", lambda: "got it")

    @create(fn_id="direct-receiver", trigger=TriggerEvent(event="otel/received-direct"))
    def direct_receiver(ctx: ContextSync) -> str:
        return "got it"

    @create(fn_id="failing", trigger=TriggerEvent(event="otel/failing"), retries=0)
    async def failing(ctx: Context) -> None:
        def bad() -> None:
            raise ValueError("nope")

        await ctx.step.run("bad", bad)

    return [
        *three_steps(client),
        child,
        parent,
        sender,
        direct_sender,
        receiver,
        direct_receiver,
        failing,
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    middleware = OTelMiddleware.factory(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    db = Path(tmp_path_factory.mktemp("otel")) / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="otel",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
            middleware=[middleware],
        )
        # The same middleware on an app that makes one request per step (checkpointing off).
        per_request = inngest_mw.Inngest(
            app_id="otel-pr",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
            middleware=[middleware],
            checkpointing=False,
        )
        with (
            AppServer(serve(client, build(client))) as app,
            AppServer(serve(per_request, three_steps(per_request))) as per_request_app,
        ):
            sync(app)
            sync(per_request_app)
            yield Env(engine.url, app.url, exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def run_trace_id(run_id: str) -> int:
    """The documented derivation: the first 128 bits of sha256(run ID)."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:32], 16)


def finished(env: Env) -> Sequence[ReadableSpan]:
    return env.spans.get_finished_spans()


def requests_of(
    env: Env, *, run_id: str | None = None, fn: str | None = None
) -> list[ReadableSpan]:
    return [
        s
        for s in finished(env)
        if s.name == "inngest.request"
        and s.attributes is not None
        and (run_id is None or s.attributes.get("inngest.run.id") == run_id)
        and (fn is None or s.attributes.get("inngest.function.id") == fn)
    ]


def in_trace(env: Env, trace_id: int) -> list[ReadableSpan]:
    return [s for s in finished(env) if s.context is not None and s.context.trace_id == trace_id]


def parent_id(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return cast(int, span.context.span_id)  # the SDK leaves ReadableSpan.context unannotated


def metric_points(env: Env, name: str, **labels: Any) -> list[Any]:
    data = env.metrics.get_metrics_data()
    points: list[Any] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(
                        p
                        for p in metric.data.data_points
                        if all((p.attributes or {}).get(k) == v for k, v in labels.items())
                    )
    return points


def counted(env: Env, name: str, **labels: Any) -> int:
    return sum(int(p.value) for p in metric_points(env, name, **labels))


@pytest.mark.parametrize("app", ["otel", "otel-pr"])
@pytest.mark.parametrize("fn", ["three", "three-sync"])
def test_a_three_step_run_is_one_trace_with_a_span_per_request_and_exactly_three_step_spans(
    env: Env, app: str, fn: str
) -> None:
    [event_id] = send(env.url, {"name": f"{app}/{fn}", "data": {}})
    run = run_for_event(env.url, event_id)
    assert (run["status"], run["output"]) == ("Completed", 6)
    run_id = run["run_id"]
    trace_id = run_trace_id(run_id)

    requests = requests_of(env, run_id=run_id)
    memoized = sorted(
        cast(int, s.attributes["inngest.steps.memoized"]) for s in requests if s.attributes
    )
    if app == "otel":
        # Checkpointing (the default): one request runs all three steps back to back.
        assert memoized == [0]
    else:
        # Three requests each execute one step; the fourth replays all three and returns.
        assert memoized == [0, 1, 2, 3]
    assert all(s.kind is SpanKind.SERVER for s in requests)
    # No server traceparent and no sender: all requests hang off one synthetic parent.
    assert len({parent_id(s) for s in requests}) == 1
    assert all(s.parent is not None and s.parent.is_remote for s in requests)

    spans = in_trace(env, trace_id)
    steps = [s for s in spans if s.name.startswith("inngest.step")]
    assert sorted(s.name for s in steps) == ["inngest.step a", "inngest.step b", "inngest.step c"]
    assert len(spans) == len(requests) + len(steps)
    request_ids = {span_id(s) for s in requests}
    assert {parent_id(s) for s in steps} <= request_ids
    assert len({parent_id(s) for s in steps}) == len(requests) - (app == "otel-pr")
    step_attrs = steps[0].attributes or {}
    assert step_attrs["inngest.run.id"] == run_id
    assert step_attrs["inngest.step.kind"] == "run"
    request_attrs = requests[0].attributes or {}
    assert request_attrs["faas.trigger"] == "pubsub"
    assert request_attrs["faas.invocation_id"] == run_id
    assert request_attrs["inngest.event.name"] == f"{app}/{fn}"
    assert str(request_attrs["code.function.name"]).endswith(fn.replace("-", "_"))

    fn_id = f"{app}-{fn}"
    assert counted(env, "inngest.runs.started", **{"inngest.function.id": fn_id}) == 1
    assert counted(env, "inngest.runs.finished", **{"inngest.function.id": fn_id}) == 1
    assert counted(env, "inngest.steps.started", **{"inngest.function.id": fn_id}) == 3
    assert counted(env, "inngest.steps.finished", **{"inngest.function.id": fn_id}) == 3
    durations = metric_points(env, "inngest.step.duration", **{"inngest.function.id": fn_id})
    assert sum(p.count for p in durations) == 3
    runs = metric_points(env, "inngest.run.duration", **{"inngest.function.id": fn_id})
    assert sum(p.count for p in runs) == 1


def test_an_invoked_child_run_joins_the_parent_trace(env: Env) -> None:
    [event_id] = send(env.url, {"name": "otel/parent", "data": {}})
    run = run_for_event(env.url, event_id)
    assert (run["status"], run["output"]) == ("Completed", 42)
    trace_id = run_trace_id(run["run_id"])
    children = requests_of(env, fn="otel-child")
    assert children, "the child run was traced"
    assert {s.context.trace_id for s in children if s.context} == {trace_id}
    child_steps = [s for s in in_trace(env, trace_id) if s.name == "inngest.step double"]
    assert len(child_steps) == 1
    parent_requests = {span_id(s) for s in requests_of(env, run_id=run["run_id"])}
    assert {parent_id(s) for s in children} <= parent_requests


@pytest.mark.parametrize(
    ("event", "receiver", "send_parent"),
    [
        ("otel/send", "otel-receiver", "inngest.step emit"),
        ("otel/send-direct", "otel-direct-receiver", "inngest.request"),
    ],
)
def test_an_event_sent_from_a_function_starts_a_run_in_the_senders_trace(
    env: Env, event: str, receiver: str, send_parent: str
) -> None:
    [event_id] = send(env.url, {"name": event, "data": {}})
    run = run_for_event(env.url, event_id)
    assert run["status"] == "Completed"
    trace_id = run_trace_id(run["run_id"])
    received = poll(
        lambda: requests_of(env, fn=receiver),
        lambda spans: len(spans) >= 1,
        what=f"a traced run of {receiver}",
    )
    assert {s.context.trace_id for s in received if s.context} == {trace_id}
    [send_span] = [s for s in in_trace(env, trace_id) if s.kind is SpanKind.PRODUCER]
    assert (send_span.attributes or {})["messaging.system"] == "inngest"
    assert {parent_id(s) for s in received} == {span_id(send_span)}
    [sender_side] = [s for s in in_trace(env, trace_id) if span_id(s) == parent_id(send_span)]
    assert sender_side.name == send_parent


def test_the_servers_traceparent_header_is_continued(env: Env) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = httpx.post(
        env.app_url,
        params={"fnId": "otel-three", "stepId": "step"},
        json=call_body(run_id="01HEADER"),
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
        timeout=10,
    )
    assert response.status_code == 206
    [request] = requests_of(env, run_id="01HEADER")
    assert request.context is not None
    assert (request.context.trace_id, parent_id(request)) == (int(trace_id, 16), int(parent, 16))
    [step] = [s for s in in_trace(env, int(trace_id, 16)) if s.name == "inngest.step a"]
    assert parent_id(step) == span_id(request)


def test_a_failing_step_yields_an_error_span_and_failure_counts(env: Env) -> None:
    [event_id] = send(env.url, {"name": "otel/failing", "data": {}})
    run = run_for_event(env.url, event_id)
    assert run["status"] == "Failed"
    spans = in_trace(env, run_trace_id(run["run_id"]))
    [step] = [s for s in spans if s.name == "inngest.step bad"]
    assert step.status.status_code is StatusCode.ERROR
    assert (step.attributes or {})["error.type"] == "ValueError"
    assert [e.name for e in step.events] == ["exception"]
    failed_requests = [s for s in spans if s.name == "inngest.request" and not s.status.is_ok]
    assert len(failed_requests) == 1
    assert (failed_requests[0].attributes or {})["inngest.final_attempt"] is True
    labels = {"inngest.function.id": "otel-failing", "inngest.final_attempt": True}
    assert counted(env, "inngest.steps.failed", **labels) == 1
    assert counted(env, "inngest.runs.failed", **labels) == 1
    assert counted(env, "inngest.runs.finished", **{"inngest.function.id": "otel-failing"}) == 0
