"""``OTelMiddleware``: one trace per run, a span per request and per new step attempt, run metrics.

Spans: ``inngest.request`` (SERVER) for each call request, ``inngest.step <id>`` (INTERNAL) for
each step attempt that executes, ``send <event>`` (PRODUCER) for each send. Memoized steps replayed
by later requests are not spans again; each request counts them in ``inngest.steps.memoized``.
Sync hooks (nothing here does I/O; exporters run in the SDK's processors), and async twins of
the wrap hooks so async functions pay no thread hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

from inngest_mw import MiddlewareSync
from inngest_mw_otel import _attributes as attr
from inngest_mw_otel import _propagation
from inngest_mw_otel._telemetry import Telemetry, default_telemetry
from inngest_mw_otel._traceref import run_attributes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from inngest_mw import (
        CommRequest,
        CommResponse,
        Context,
        ContextSync,
        Event,
        Function,
        Inngest,
        MiddlewareFactory,
        StepInfo,
        StepMemos,
        TransformOutputResult,
    )

__all__ = ["OTelMiddleware"]


def _record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_attribute(attr.ERROR_TYPE, attr.error_type(error))
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class OTelMiddleware(MiddlewareSync):
    """Traces and metrics through the OpenTelemetry API; global providers unless given.

    ``Inngest(middleware=[OTelMiddleware])`` or
    ``OTelMiddleware.factory(tracer_provider=..., meter_provider=...)``.
    """

    def __init__(
        self, client: Inngest, raw_request: object, telemetry: Telemetry | None = None
    ) -> None:
        super().__init__(client, raw_request)
        self._telemetry = telemetry or default_telemetry()
        self._headers: Mapping[str, str] = {}
        self._span: Span | None = None
        self._labels: dict[str, AttributeValue] = {attr.APP_ID: client.app_id}
        self._run_id = ""
        self._event_ts = 0
        self._memoized = 0
        self._send_span: Span | None = None

    @classmethod
    def factory(cls, *args: Any, **kwargs: Any) -> MiddlewareFactory:
        """``OTelMiddleware.factory(tracer_provider=..., meter_provider=..., userland=...)``; each
        may be omitted (``userland``: a ``UserlandSpans`` exporting the spans made in steps)."""
        return super().factory(telemetry=Telemetry(*args, **kwargs))

    # -- the request span ------------------------------------------------------------------

    def wrap_request(
        self, call_next: Callable[[], CommResponse], request: CommRequest
    ) -> CommResponse:
        self._headers = request.headers
        started = time.perf_counter()
        try:
            response = call_next()
        except BaseException:
            self._end_request(None, started)
            raise
        self._end_request(response.status, started)
        if self._telemetry.userland is not None:
            self._telemetry.userland.force_flush()  # the run's spans are sent before it answers
        return response

    async def wrap_request_async(
        self, call_next: Callable[[], Awaitable[CommResponse]], request: CommRequest
    ) -> CommResponse:
        """The async twin of ``wrap_request`` (async functions run with no thread hop)."""
        self._headers = request.headers
        started = time.perf_counter()
        try:
            response = await call_next()
        except BaseException:
            self._end_request(None, started)
            raise
        self._end_request(response.status, started)
        if self._telemetry.userland is not None:
            await asyncio.to_thread(self._telemetry.userland.force_flush)
        return response

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        # Opened here, not in wrap_request: this is the first hook that knows the run ID and the
        # event, which decide the parent (and so the trace).
        self._run_id, self._event_ts = ctx.run_id, ctx.event.ts
        self._labels[attr.FUNCTION_ID] = function.id
        parent, links = self._parent(ctx.run_id, ctx.event.data)
        attributes: dict[str, AttributeValue] = {
            **self._labels,
            attr.RUN_ID: ctx.run_id,
            attr.ATTEMPT: ctx.attempt,
            attr.EVENT_NAME: ctx.event.name,
            attr.FAAS_TRIGGER: attr.faas_trigger(ctx.event.name),
            attr.FAAS_INVOCATION_ID: ctx.run_id,
            attr.CODE_FUNCTION: attr.code_function(function.handler),
        }
        if ctx.event.id:
            attributes[attr.EVENT_ID] = ctx.event.id
        self._span = self._telemetry.tracer.start_span(
            "inngest.request",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            links=links,
        )

    def _parent(self, run_id: str, data: Mapping[str, Any]) -> tuple[TraceContext, list[Link]]:
        """The server's context first; the sender's becomes the parent only when there is none."""
        sender = _propagation.from_event(data)
        server = _propagation.from_headers(self._headers)
        if server is None:
            return sender or _propagation.from_run_id(run_id), []
        if sender is None:
            return server, []
        return server, [Link(trace.get_current_span(sender).get_span_context())]

    def wrap_function(self, call_next: Callable[[], Any], ctx: Context | ContextSync) -> Any:
        if self._span is None:
            return call_next()
        with trace.use_span(self._span, record_exception=False, set_status_on_exception=False):
            return call_next()

    async def wrap_function_async(
        self, call_next: Callable[[], Awaitable[Any]], ctx: Context | ContextSync
    ) -> Any:
        if self._span is None:
            return await call_next()
        with trace.use_span(self._span, record_exception=False, set_status_on_exception=False):
            return await call_next()

    def transform_output(self, result: TransformOutputResult) -> None:
        if self._span is not None and result.step is not None:
            self._span.set_attributes({attr.STEP_OP: result.step.op, attr.STEP_ID: result.step.id})

    def _end_request(self, status: int | None, started: float) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        labels = dict(self._labels)
        if status is not None:
            span.set_attribute(attr.HTTP_STATUS, status)
            labels[attr.HTTP_STATUS] = status
        span.set_attribute(attr.STEPS_MEMOIZED, self._memoized)
        span.end()
        self._telemetry.request_duration.record(time.perf_counter() - started, labels)

    # -- runs ------------------------------------------------------------------------------

    def on_run_start(self, ctx: Context | ContextSync) -> None:
        self._telemetry.runs_started.add(1, self._labels)

    def on_run_complete(self, ctx: Context | ContextSync, output: Any) -> None:
        self._telemetry.runs_finished.add(1, self._labels)
        self._record_run_duration(self._labels)

    def on_run_error(
        self, ctx: Context | ContextSync, error: BaseException, is_final_attempt: bool
    ) -> None:
        if self._span is not None:
            _record_error(self._span, error)
            self._span.set_attribute(attr.FINAL_ATTEMPT, is_final_attempt)
        labels = {
            **self._labels,
            attr.ERROR_TYPE: attr.error_type(error),
            attr.FINAL_ATTEMPT: is_final_attempt,
        }
        self._telemetry.runs_failed.add(1, labels)
        if is_final_attempt:
            self._record_run_duration(labels)

    def _record_run_duration(self, labels: Attributes) -> None:
        if self._event_ts > 0:
            elapsed = max(0.0, time.time() - self._event_ts / 1000)
            self._telemetry.run_duration.record(elapsed, labels)

    # -- steps -----------------------------------------------------------------------------

    def transform_step_input(self, info: StepInfo) -> None:
        if info.memoized:
            self._memoized += 1
        elif info.kind == "invoke":
            payload = info.options.get("payload")
            if isinstance(payload, dict):
                data = payload.get("data")
                payload["data"] = self._with_trace(data if isinstance(data, dict) else {})

    @contextlib.contextmanager
    def _step_span(self, info: StepInfo) -> Iterator[None]:
        """The span and metrics of one step attempt, around its handler."""
        labels = {**self._labels, attr.STEP_KIND: info.kind}
        attributes: dict[str, AttributeValue] = {
            **labels,
            attr.RUN_ID: self._run_id,
            attr.STEP_ID: info.id,
            attr.STEP_INDEX: info.index,
            attr.ATTEMPT: info.attempt,
        }
        self._telemetry.steps_started.add(1, labels)
        started = time.perf_counter()
        with self._telemetry.tracer.start_as_current_span(
            f"inngest.step {info.id}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            userland = self._telemetry.userland
            root = None if userland is None else run_attributes(self._headers, self._run_id)
            if userland is not None and root is not None:
                userland.declare(
                    span,
                    {
                        **root,
                        "inngest.step.id": info.id,
                        "inngest.step.index": info.index,
                        "inngest.step.hash": info.hashed_id,
                        "inngest.step.attempt": info.attempt,
                    },
                )
            try:
                yield
            except BaseException as exc:
                _record_error(span, exc)
                self._telemetry.step_duration.record(
                    time.perf_counter() - started, {**labels, attr.ERROR_TYPE: attr.error_type(exc)}
                )
                raise
            finally:
                if userland is not None and root is not None:
                    userland.release(span)
        self._telemetry.step_duration.record(time.perf_counter() - started, labels)
        self._telemetry.steps_finished.add(1, labels)

    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        with self._step_span(info):
            return call_next()

    async def wrap_step_handler_async(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        with self._step_span(info):
            return await call_next()

    def on_step_error(self, info: StepInfo, error: BaseException, is_final_attempt: bool) -> None:
        labels = {
            **self._labels,
            attr.STEP_KIND: info.kind,
            attr.ERROR_TYPE: attr.error_type(error),
            attr.FINAL_ATTEMPT: is_final_attempt,
        }
        self._telemetry.steps_failed.add(1, labels)

    # -- sends -----------------------------------------------------------------------------

    def before_send_events(self, events: list[Event]) -> list[Event] | None:
        """Open the send span and put its context in every event, for the runs they start."""
        names = sorted({event.name for event in events})
        attributes: dict[str, AttributeValue] = {
            attr.MESSAGING_SYSTEM: "inngest",
            attr.MESSAGING_OPERATION_TYPE: "send",
            attr.MESSAGING_OPERATION_NAME: "send",
            attr.MESSAGING_BATCH_COUNT: len(events),
        }
        if len(names) == 1:
            attributes[attr.MESSAGING_DESTINATION] = names[0]
        span = self._telemetry.tracer.start_span(
            f"send {names[0]}" if len(names) == 1 else "send",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        self._send_span = span
        context = trace.set_span_in_context(span)
        return [
            event.model_copy(update={"data": self._with_trace(event.data, context)})
            for event in events
        ]

    @contextlib.contextmanager
    def _send_span_scope(self) -> Iterator[Callable[[list[str]], None]]:
        """The send span (opened in ``before_send_events``) around the HTTP call; yields a
        callback taking the accepted IDs."""
        span, self._send_span = self._send_span, None
        if span is None:
            yield lambda ids: None
            return
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                yield (
                    lambda ids: (
                        span.set_attribute(attr.MESSAGING_MESSAGE_ID, ids[0])
                        if len(ids) == 1
                        else None
                    )
                )
            except BaseException as exc:
                _record_error(span, exc)
                raise

    def wrap_send(self, call_next: Callable[[], list[str]], events: list[Event]) -> list[str]:
        with self._send_span_scope() as sent:
            ids = call_next()
            sent(ids)
            return ids

    async def wrap_send_async(
        self, call_next: Callable[[], Awaitable[list[str]]], events: list[Event]
    ) -> list[str]:
        with self._send_span_scope() as sent:
            ids = await call_next()
            sent(ids)
            return ids

    @staticmethod
    def _with_trace(data: dict[str, Any], context: TraceContext | None = None) -> dict[str, Any]:
        """A copy of ``data`` carrying the trace context; ``data`` itself when nothing is traced."""
        carrier = _propagation.carrier(context)
        if not carrier:
            return data
        return {**data, _propagation.TRACE_CONTEXT_KEY: carrier}
