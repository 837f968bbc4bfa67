"""The shipped middleware with the newer step kinds (fetch, ai.infer, ai.wrap, wait_for_signal),
all four stacked on one app over real HTTP, for async and sync functions: OTel traces the step
the app runs (``ai.wrap``) with its kind, encryption seals what the app sends of it (output and
input) while the server-made requests and their answers pass as the server needs them, logging
and Sentry see every kind without failing a request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from inngest_mw_asgi import serve
from inngest_mw_encryption import EncryptionMiddleware, LibsodiumStrategy
from inngest_mw_logging import LoggingMiddleware
from inngest_mw_otel import OTelMiddleware
from inngest_mw_sentry import SentryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent, ai
from inngest_mw.memo import hash_step_id

KEY = "kinds-middleware-key"
MODEL = ai.openai("gpt-test", api_key="sk-plain", base_url="http://127.0.0.1:9/v1")
PAGE = {
    "url": "https://crm.example.com/7",
    "headers": {},
    "body": "I was charged twice",
    "status_code": 200,
}
ANSWER = {"choices": [{"message": {"content": "billing"}}]}


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="kinds", trigger=TriggerEvent(event="mw/kinds"))
    async def kinds(ctx: Context) -> Any:
        page = await ctx.step.fetch("page", "https://crm.example.com/7")
        answer = await ctx.step.ai.infer("ask", model=MODEL, body={"messages": [page.body]})
        label = await ctx.step.ai.wrap(
            "label", str.upper, answer["choices"][0]["message"]["content"]
        )
        got = await ctx.step.wait_for_signal("ok", signal="kinds-ok", timeout="1h")
        return {"label": label, "ok": None if got is None else got.data}

    @client.create_function(fn_id="kinds-sync", trigger=TriggerEvent(event="mw/kinds"))
    def kinds_sync(ctx: ContextSync) -> Any:
        page = ctx.step.fetch("page", "https://crm.example.com/7")
        answer = ctx.step.ai.infer("ask", model=MODEL, body={"messages": [page.body]})
        label = ctx.step.ai.wrap("label", str.upper, answer["choices"][0]["message"]["content"])
        got = ctx.step.wait_for_signal("ok", signal="kinds-ok", timeout="1h")
        return {"label": label, "ok": None if got is None else got.data}

    return [kinds, kinds_sync]


class Envelopes(Transport):
    """Keeps what the Sentry SDK would send, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        with self.lock:
            self.envelopes.append(envelope)

    def transactions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                i.payload.json
                for e in self.envelopes
                for i in e.items
                if i.type == "transaction" and i.payload.json is not None
            ]


class Env:
    def __init__(self, caller: Caller, spans: InMemorySpanExporter, sentry: Envelopes) -> None:
        self.caller, self.spans, self.sentry = caller, spans, sentry


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    sentry = Envelopes()
    previous = sentry_sdk.get_client()
    sentry_sdk.init(dsn="https://public@127.0.0.1/1", transport=sentry, traces_sample_rate=1.0)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    client = inngest_mw.Inngest(
        app_id="mw",
        is_production=False,
        middleware=[
            OTelMiddleware.factory(tracer_provider=tracer_provider, meter_provider=meter_provider),
            SentryMiddleware,
            LoggingMiddleware,
            EncryptionMiddleware.factory(key=KEY),
        ],
    )
    try:
        with serve_asgi(serve(client, _functions(client))) as base:
            yield Env(Caller(base + "/api/inngest"), spans, sentry)
    finally:
        tracer_provider.shutdown()
        sentry_sdk.get_global_scope().set_client(previous)


@pytest.fixture(params=["", "-sync"], ids=["async", "sync"])
def fn_id(request: pytest.FixtureRequest) -> str:
    return f"mw-kinds{request.param}"


def test_server_made_requests_go_out_as_the_server_needs_them(env: Env, fn_id: str) -> None:
    first = env.caller.call(fn_id, call_body())
    [fetch] = first.json()
    assert (fetch["op"], fetch["opts"]["url"]) == ("Gateway", "https://crm.example.com/7")
    memos = {hash_step_id("page"): {"data": PAGE}}  # the server's answer: plaintext
    [infer] = env.caller.call(fn_id, call_body(steps=memos)).json()
    assert infer["op"] == "AIGateway"
    assert infer["opts"]["auth_key"] == "sk-plain"
    assert infer["opts"]["body"]["messages"] == ["I was charged twice"]


def test_the_step_the_app_runs_is_sealed_and_traced_with_its_kind(env: Env, fn_id: str) -> None:
    env.spans.clear()
    memos = {hash_step_id("page"): {"data": PAGE}, hash_step_id("ask"): {"data": ANSWER}}
    [label] = env.caller.call(fn_id, call_body(steps=memos)).json()
    assert label["op"] == "StepRun"
    assert label["opts"]["type"] == "step.ai.wrap"
    strategy = LibsodiumStrategy(KEY)
    assert strategy.decrypt(label["data"]["data"]) == "BILLING"
    [sealed_input] = label["opts"]["input"]
    assert strategy.decrypt(sealed_input["data"]) == ["billing"]
    [step_span] = [s for s in env.spans.get_finished_spans() if s.name == "inngest.step label"]
    assert step_span.attributes is not None
    assert step_span.attributes["inngest.step.kind"] == "ai.wrap"
    sentry_steps = [
        span["data"].get("inngest.step.kind")
        for t in env.sentry.transactions()
        for span in t.get("spans", [])
        if span.get("description") == "label"
    ]
    assert "ai.wrap" in sentry_steps


def test_the_run_completes_with_a_signal_through_every_middleware(
    env: Env, fn_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = LibsodiumStrategy(KEY)
    sealed = {
        "__ENCRYPTED__": True,
        "__STRATEGY__": "inngest/libsodium",
        "data": strategy.encrypt("BILLING"),
    }
    memos = {
        hash_step_id("page"): {"data": PAGE},
        hash_step_id("ask"): {"data": ANSWER},
        hash_step_id("label"): {"data": sealed},
        hash_step_id("ok"): {"data": {"signal": "kinds-ok", "data": {"by": "ana"}}},
    }
    with caplog.at_level(logging.ERROR):
        done = env.caller.call(fn_id, call_body(steps=memos))
    assert done.status_code == 200
    assert strategy.decrypt(done.json()["data"]) == {"label": "BILLING", "ok": {"by": "ana"}}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
