"""``step.realtime.publish`` under the shipped middleware, over real HTTP, for async and sync
functions: OTel traces it with its kind, encryption seals the step's memoized output while the
message itself reaches the realtime API in plaintext (subscribers read it there), logging and
Sentry see it without failing the request."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

KEY = "realtime-middleware-key"


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="tell", trigger=TriggerEvent(event="mw/tell"))
    async def tell(ctx: Context) -> Any:
        return await ctx.step.realtime.publish("tell", "user:7", "note", {"card": "4242"})

    @client.create_function(fn_id="tell-sync", trigger=TriggerEvent(event="mw/tell"))
    def tell_sync(ctx: ContextSync) -> Any:
        return ctx.step.realtime.publish("tell", "user:7", "note", {"card": "4242"})

    return [tell, tell_sync]


class Env:
    def __init__(self, caller: Caller, spans: InMemorySpanExporter, bodies: list[Any]) -> None:
        self.caller, self.spans, self.bodies = caller, spans, bodies


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    bodies: list[Any] = []
    lock = threading.Lock()

    async def publish(request: Request) -> Response:
        with lock:
            bodies.append(json.loads(await request.body()))
        return Response(status_code=200)

    api = Starlette(routes=[Route("/v1/realtime/publish", publish, methods=["POST"])])
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    with serve_asgi(api) as api_url:
        client = inngest_mw.Inngest(
            app_id="mw",
            is_production=False,
            api_base_url=api_url,
            checkpointing=False,
            middleware=[
                OTelMiddleware.factory(
                    tracer_provider=tracer_provider, meter_provider=meter_provider
                ),
                SentryMiddleware,
                LoggingMiddleware,
                EncryptionMiddleware.factory(key=KEY),
            ],
        )
        try:
            with serve_asgi(serve(client, _functions(client))) as base:
                yield Env(Caller(base + "/api/inngest"), spans, bodies)
        finally:
            tracer_provider.shutdown()


@pytest.mark.parametrize("fn_id", ["mw-tell", "mw-tell-sync"])
def test_the_message_goes_out_plain_while_the_step_output_is_sealed_and_traced(
    env: Env, fn_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    env.spans.clear()
    env.bodies.clear()
    with caplog.at_level(logging.ERROR):
        [op] = env.caller.call(fn_id, call_body()).json()
    assert env.bodies == [{"card": "4242"}]
    assert (op["op"], op["opts"]) == ("StepRun", {"type": "step.realtime.publish"})
    assert LibsodiumStrategy(KEY).decrypt(op["data"]["data"]) == {"card": "4242"}
    assert "4242" not in json.dumps(op)
    [span] = [s for s in env.spans.get_finished_spans() if s.name == "inngest.step tell"]
    assert span.attributes is not None
    assert span.attributes["inngest.step.kind"] == "realtime.publish"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
