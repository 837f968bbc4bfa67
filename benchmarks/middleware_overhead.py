"""Section 4: what the shipped middleware (OTel, Sentry, logging, encryption) adds to a request.

Each runs alone, configured as in production but exporting to memory, on the section-3 request
(10 memoized steps + 1 new step = 11 step calls), as a ratio to the same request with no middleware
measured in the same interleaved group. The sinks are emptied between repeats so memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sentry_sdk
from inngest_mw_encryption import EncryptionMiddleware, LibsodiumStrategy
from inngest_mw_encryption._codec import Codec
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

from benchmarks import apps
from benchmarks.hooks import HOOK_MEMOIZED, measure_requests
from benchmarks.timing import Config, Stats
from inngest_mw import CommHandler, CommRequest, CommResponse
from inngest_mw.pipeline import MiddlewareFactory

__all__ = ["ENCRYPTION_KEY", "MIDDLEWARE", "STEP_CALLS", "OverheadRow", "run"]

ENCRYPTION_KEY = "bench-key"
STEP_CALLS = HOOK_MEMOIZED + 1
MIDDLEWARE: dict[str, str] = {
    "otel": "`OTelMiddleware` (SDK tracer + meter, in-memory exporter and reader)",
    "sentry": "`SentryMiddleware` (`traces_sample_rate=1.0`, in-memory transport)",
    "logging": "`LoggingMiddleware` (logger writing to an in-memory stream)",
    "encryption": "`EncryptionMiddleware` (libsodium; the 10 memoized outputs encrypted)",
}


@dataclass(frozen=True, slots=True)
class OverheadRow:
    middleware: str
    function: str  # "async" (``handle``) | "sync" (``handle_sync``)
    base: Stats
    """The same request with no middleware."""
    stats: Stats

    @property
    def ratio(self) -> float:
        return self.stats.median_us / self.base.median_us

    @property
    def added_us(self) -> float:
        return self.stats.median_us - self.base.median_us

    @property
    def per_step_us(self) -> float:
        return self.added_us / STEP_CALLS


@dataclass(frozen=True, slots=True)
class Subject:
    """One middleware under test: its factory, the body it needs, and its in-memory sink."""

    key: str
    factory: MiddlewareFactory
    body: bytes
    reset: Callable[[], None] | None
    """Empty the sink (between repeats); ``None``: it keeps nothing."""
    check: Callable[[CommResponse], bool] | None
    """Whether one request visibly did the middleware's work; ``None``: nothing to see."""


class MemoryTransport(Transport):
    """Keeps the envelopes sentry-sdk would send, until ``clear``."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._lock:
            self.envelopes.append(envelope)

    def clear(self) -> None:
        with self._lock:
            self.envelopes.clear()


def _otel(stack: contextlib.ExitStack, body: bytes) -> Subject:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    stack.callback(meter_provider.shutdown)
    stack.callback(tracer_provider.shutdown)
    factory = OTelMiddleware.factory(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return Subject(
        "otel", factory, body, exporter.clear, lambda _: bool(exporter.get_finished_spans())
    )


def _sentry(stack: contextlib.ExitStack, body: bytes) -> Subject:
    transport = MemoryTransport()
    previous = sentry_sdk.get_client()
    sentry_sdk.init(dsn="https://public@127.0.0.1/1", transport=transport, traces_sample_rate=1.0)
    client = sentry_sdk.get_client()

    def restore() -> None:
        client.close()
        sentry_sdk.get_global_scope().set_client(previous)

    stack.callback(restore)
    return Subject(
        "sentry", SentryMiddleware, body, transport.clear, lambda _: bool(transport.envelopes)
    )


def _logging(stack: contextlib.ExitStack, body: bytes) -> Subject:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("benchmarks.middleware_overhead")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stack.callback(logger.removeHandler, handler)

    def reset() -> None:
        stream.seek(0)
        stream.truncate()

    # The benchmark function logs nothing and succeeds, so there is no line to look for: the
    # check is the response alone (``check_ours``), and the row is the cost of the bookkeeping.
    return Subject("logging", LoggingMiddleware.factory(logger=logger), body, reset, None)


def _encryption(stack: contextlib.ExitStack, body: bytes) -> Subject:
    codec = Codec(LibsodiumStrategy(ENCRYPTION_KEY))
    encrypted = apps.call_body(HOOK_MEMOIZED, lambda value: codec.seal(value, "a memoized output"))
    return Subject(
        "encryption",
        EncryptionMiddleware.factory(key=ENCRYPTION_KEY),
        encrypted,
        None,
        lambda response: b"__ENCRYPTED__" in response.body,
    )


@contextlib.contextmanager
def subjects() -> Iterator[list[Subject]]:
    """Every middleware under test, set up; their providers and the Sentry client undone after."""
    body = apps.call_body(HOOK_MEMOIZED)
    with contextlib.ExitStack() as stack:
        yield [make(stack, body) for make in (_otel, _sentry, _logging, _encryption)]


def _one(handler: CommHandler, async_fn: bool, body: bytes) -> CommResponse:
    fn_id = apps.FN_ASYNC if async_fn else apps.FN_SYNC
    request = CommRequest("POST", apps.url(fn_id), apps.HEADERS, body)
    if async_fn:
        return asyncio.run(handler.handle(request))
    return handler.handle_sync(request)


def run(cfg: Config) -> list[OverheadRow]:
    rows: list[OverheadRow] = []
    with subjects() as under_test:

        def between() -> None:
            for subject in under_test:
                if subject.reset is not None:
                    subject.reset()

        for async_fn in (True, False):
            cases = {"none": (apps.ours_handler(), apps.call_body(HOOK_MEMOIZED))}
            for subject in under_test:
                handler = apps.ours_handler([subject.factory])
                if subject.reset is not None:
                    subject.reset()
                response = _one(handler, async_fn, subject.body)
                apps.check_ours(response, HOOK_MEMOIZED)
                if subject.check is not None and not subject.check(response):
                    raise AssertionError(f"{subject.key}: the middleware left no trace")
                cases[subject.key] = (handler, subject.body)
            stats = measure_requests(async_fn, cases, cfg, between)
            function = "async" if async_fn else "sync"
            rows += [
                OverheadRow(subject.key, function, stats["none"], stats[subject.key])
                for subject in under_test
            ]
    return rows
