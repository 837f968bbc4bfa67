"""Unit-test durable functions in-process: no server, no HTTP, the real step engine and pipeline.

``run(fn, event=..., mocks={...})`` calls the function request after request exactly as the
executor would (memoizing each step, following plans and parallel steps, retrying with the attempt
counter, running ``on_failure`` when the run fails) and returns a ``TestRun``. ``mocks`` replaces
steps by ID: ``run`` (a value or an exception to raise), ``sleep`` (skipped unless mocked),
``wait_for_event`` (an ``Event``/dict, or ``TIMEOUT``), ``invoke`` (a value or an exception),
``fetch`` (a ``FetchResponse``), ``ai.infer`` (the provider's answer), ``wait_for_signal`` (a
``Signal``, its data, or ``TIMEOUT``);
``send_event`` is recorded and never sent, and so are every realtime publish
(``step.realtime.publish``, ``ctx.publish``, ``realtime.publish``: ``TestRun.published``)
and ``ctx.metadata`` updates (``metadata``). An unmocked wait or invoke raises ``UnmockedStepError``
naming the step instead of hanging. Mocks and recording are themselves a middleware, appended
innermost, so user middleware runs exactly as in production.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, Unpack

from inngest_mw import realtime as _realtime
from inngest_mw._drive import adrive, drive
from inngest_mw.client import Inngest
from inngest_mw.errors import Error
from inngest_mw.event import Event
from inngest_mw.execution import CallRequest, CallResult, RequestMeta, request_flow
from inngest_mw.fetch import FetchResponse
from inngest_mw.function import Function, Handler
from inngest_mw.memo import parse_memos
from inngest_mw.metadata import API_SINK
from inngest_mw.pipeline import HookTable, MiddlewareSync, PipelineSpec, StepInfo, mark_inner
from inngest_mw.signals import Signal
from inngest_mw.stepkind import StepKind
from inngest_mw.wire import Opcode, serialize_error

__all__ = [
    "TIMEOUT",
    "RunOptions",
    "StepRecord",
    "TestRun",
    "UnmockedStepError",
    "run",
    "run_sync",
]


class _Timeout:
    def __repr__(self) -> str:
        return "TIMEOUT"


TIMEOUT: Final = _Timeout()

# The steps the server resolves, by the opcode they report, and what their mocks may be.
_EXTERNAL: Final = {
    Opcode.SLEEP: StepKind.SLEEP,
    Opcode.WAIT_FOR_EVENT: StepKind.WAIT_FOR_EVENT,
    Opcode.INVOKE: StepKind.INVOKE,
    Opcode.GATEWAY: StepKind.FETCH,
    Opcode.AI_GATEWAY: StepKind.AI_INFER,
    Opcode.WAIT_FOR_SIGNAL: StepKind.WAIT_FOR_SIGNAL,
}
_MOCK_HINTS: Final = {
    StepKind.WAIT_FOR_EVENT: "(an Event, a dict, or testing.TIMEOUT)",
    StepKind.WAIT_FOR_SIGNAL: "(a Signal, the signal's data, or testing.TIMEOUT)",
    StepKind.FETCH: "(a FetchResponse, or an exception for a request that got no answer)",
    StepKind.AI_INFER: "(the provider's answer as a dict, or an exception)",
}
"""Mock value for a ``wait_for_event`` that times out."""


class UnmockedStepError(Error):
    """A step that needs the outside world (a wait or an invoke) has no mock."""

    code = "unmocked_step"
    retriable = False


@dataclass(slots=True)
class StepRecord:
    """One step of the run, in the order steps were reported."""

    id: str
    kind: str
    input: list[Any] = field(default_factory=list)
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    mocked: bool = False


@dataclass(slots=True)
class TestRun:
    """The outcome of ``run``: output or error, steps, sent events, attempts and the hook trace."""

    output: Any = None
    error: dict[str, Any] | None = None
    steps: list[StepRecord] = field(default_factory=list)
    events_sent: list[Event] = field(default_factory=list)
    published: list[_realtime.PublishedMessage] = field(default_factory=list)
    """Realtime messages the run published (in order; none was sent)."""
    attempts: int = 1
    requests: int = 0
    trace: list[str] = field(default_factory=list)
    on_failure: TestRun | None = None
    metadata: list[dict[str, Any]] = field(default_factory=list)
    """``ctx.metadata`` updates in order: ``via`` ``"op"`` (made in a step, ``step`` its ID) or
    ``"api"`` (made elsewhere, ``target`` as the API would get it), ``run_id``, ``scope``,
    ``kind``, ``op`` and ``values``."""

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def step(self, step_id: str) -> StepRecord:
        """The record of ``step_id``; ``KeyError`` listing the known steps otherwise."""
        for record in self.steps:
            if record.id == step_id:
                return record
        raise KeyError(f"no step {step_id!r}; steps: {[s.id for s in self.steps]}")


class _State:
    """Shared by the driver and the recording middleware of one test run."""

    def __init__(self, mocks: Mapping[str, object]) -> None:
        self.mocks = dict(mocks)
        self.lock = threading.Lock()
        self.records: dict[str, StepRecord] = {}
        self.order: list[str] = []
        self.events: list[Event] = []
        self.published: list[_realtime.PublishedMessage] = []
        self.trace: list[str] = []
        self.ids = itertools.count()

    def record(self, info: StepInfo) -> StepRecord:
        with self.lock:
            rec = self.records.get(info.hashed_id)
            if rec is None:
                rec = StepRecord(id=info.id, kind=info.kind, input=list(info.input))
                self.records[info.hashed_id] = rec
                self.order.append(info.hashed_id)
            return rec

    def mock_for(self, info: StepInfo) -> tuple[bool, object]:
        """Count an attempt of a run/send step; its mock if there is one (an exception is raised)."""
        rec = self.record(info)
        rec.attempts += 1
        if info.id not in self.mocks:
            return False, None
        rec.mocked = True
        mock = self.mocks[info.id]
        if isinstance(mock, BaseException):
            # Raised as the step's own error (not the recorder's), fresh on every attempt.
            mark_inner(mock)
            raise mock.with_traceback(None)
        return True, mock

    def fake_send(self, events: list[Event]) -> list[str]:
        with self.lock:
            self.events.extend(events)
            return [f"test-event-{next(self.ids)}" for _ in events]

    def fake_publish(self, message: _realtime.PublishedMessage) -> None:
        with self.lock:
            self.published.append(message)

    def note(self, entry: str) -> None:
        with self.lock:
            self.trace.append(entry)


class _Recorder(MiddlewareSync):
    """Mocks and records, appended innermost. Sync hooks, with async twins of its wrap hooks so
    async functions cross no thread boundary."""

    name = "inngest_mw.testing"

    def __init__(self, client: Inngest, raw_request: object, state: _State) -> None:
        super().__init__(client, raw_request)
        self.state = state

    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        mocked, value = self.state.mock_for(info)
        return value if mocked else call_next()

    async def wrap_step_handler_async(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        mocked, value = self.state.mock_for(info)
        return value if mocked else await call_next()

    def wrap_send(self, call_next: Callable[[], list[str]], events: list[Event]) -> list[str]:
        return self.state.fake_send(events)

    async def wrap_send_async(
        self, call_next: Callable[[], Awaitable[list[str]]], events: list[Event]
    ) -> list[str]:
        return self.state.fake_send(events)

    def on_step_start(self, info: StepInfo) -> None:
        self.state.note(f"step start {info.id}")

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        self.state.note(f"step complete {info.id}")

    def on_step_error(self, info: StepInfo, error: BaseException, is_final_attempt: bool) -> None:
        self.state.note(f"step error {info.id}{' (final)' if is_final_attempt else ''}")

    def before_execution(self) -> None:
        self.state.note("before_execution")

    def after_execution(self) -> None:
        self.state.note("after_execution")


class _Driver:
    """Plays the executor for one function: the loop of call requests and memoization."""

    def __init__(
        self,
        fn: Function[Any],
        handler: Handler,
        events: list[Event],
        state: _State,
        client: Inngest,
        max_attempts: int,
        run_id: str,
    ) -> None:
        self.fn = fn
        self.handler = handler
        self.events = events
        self.state = state
        self.client = client
        self.max_attempts = max_attempts
        self.run_id = run_id
        # The same pipeline the handler builds, with the recorder innermost.
        self.pipeline = (
            client.middleware + fn.middleware + PipelineSpec([_Recorder.factory(state=state)])
        )
        self.steps: dict[str, Any] = {}
        self.pending: list[str] = []
        self.step_attempts: dict[str, int] = {}
        self.disable_immediate = False
        self.result = TestRun()

    def request(self) -> tuple[CallRequest, HookTable, RequestMeta, int]:
        target = self.pending[0] if self.pending else "step"
        attempt = self.step_attempts.get(target, self.result.attempts - 1)
        call = CallRequest(
            event=self.events[0],
            events=list(self.events),
            steps=parse_memos(self.steps),
            run_id=self.run_id,
            attempt=attempt,
            max_attempts=self.max_attempts,
            disable_immediate=self.disable_immediate,
            use_api=False,
        )
        hooks = self.pipeline.build(self.client, None, async_path=self.fn.is_async)
        self.result.requests += 1
        if self.result.requests > 10_000:
            raise RuntimeError("the function did not finish within 10,000 requests")
        return call, hooks, RequestMeta(step_id=target), attempt

    def memoize(self, hashed: str, value: Any) -> None:
        self.steps[hashed] = value

    def settle(self, out: CallResult, attempt: int) -> bool:
        """Apply one response like the executor; True when the run is over.

        A retriable step error retries that step with the next attempt number (each step counts
        its own attempts, as the server does); the SDK itself reports the last one as failed for
        good, using the same finality rule as in production.
        """
        if self.pending:
            self.pending.pop(0)
        if out.step_not_found is not None:
            self.result.error = {
                "name": "StepNotFound",
                "message": f"step {out.step_not_found} not found",
            }
            return True
        if not out.ops:
            if out.error is None:
                self.result.output = out.output
                return True
            error = serialize_error(out.error)
            retriable = not out.final_attempt
            if retriable and self.result.attempts < self.max_attempts:
                self.result.attempts += 1
                return False
            self.result.error = error
            return True
        if len(out.ops) > 1:
            self.disable_immediate = True
        for op in out.ops:
            for update in op.metadata or ():
                self.result.metadata.append(
                    {"via": "op", "run_id": self.run_id, "step": op.user_id, **update}
                )
            self._apply(
                op.op,
                op.hashed_id,
                op.user_id,
                op.name,
                op.data if op.has_data else None,
                op.error,
                attempt,
            )
        return False

    def _apply(
        self,
        kind: Opcode,
        hashed: str,
        user_id: str,
        name: str,
        data: Any,
        error: dict[str, Any] | None,
        attempt: int,
    ) -> None:
        state = self.state
        if kind == Opcode.STEP_RUN:
            self.memoize(hashed, {"data": data})
            rec = state.records.get(hashed)
            if rec is not None:
                rec.output = data
        elif kind == Opcode.STEP_ERROR:
            self.step_attempts[hashed] = attempt + 1
            self.pending.insert(0, hashed)
        elif kind == Opcode.STEP_FAILED:
            self.memoize(hashed, {"error": error})
            rec = state.records.get(hashed)
            if rec is not None:
                rec.error = error
        elif kind == Opcode.STEP_PLANNED:
            self.pending.append(hashed)
        else:
            self._resolve_external(kind, hashed, user_id, name)

    def _resolve_external(self, kind: Opcode, hashed: str, user_id: str, name: str) -> None:
        """Steps the server resolves (sleeps, waits, invokes, fetches, AI requests, signals):
        what the server would have done, from the mocks."""
        step_kind = _EXTERNAL[kind]
        rec = self.state.record(
            StepInfo(id=user_id, hashed_id=hashed, kind=step_kind, index=0, display_name=user_id)
        )
        rec.attempts += 1
        has_mock = user_id in self.state.mocks
        mock = self.state.mocks.get(user_id)
        rec.mocked = has_mock
        if step_kind == StepKind.SLEEP:
            self.memoize(hashed, None)
            return
        if not has_mock:
            raise UnmockedStepError(
                f"step {user_id!r} ({step_kind}) needs a mock: pass mocks={{{user_id!r}: ...}} "
                + _MOCK_HINTS.get(step_kind, "(a value or an exception)")
            )
        if isinstance(mock, BaseException):
            rec.error = serialize_error(mock)
            self.memoize(hashed, {"error": rec.error})
            return
        if step_kind == StepKind.WAIT_FOR_EVENT:
            if mock is TIMEOUT or mock is None:
                value: Any = None
            elif isinstance(mock, Event):
                value = mock.model_dump(mode="json")
            else:
                value = dict(mock)  # type: ignore[call-overload]
            rec.output = value
            self.memoize(hashed, value)
            return
        if step_kind == StepKind.WAIT_FOR_SIGNAL:
            if mock is TIMEOUT or mock is None:
                rec.output = None
                self.memoize(hashed, None)
                return
            signal = mock if isinstance(mock, Signal) else Signal(name, mock)
            mock = {"signal": signal.signal, "data": signal.data}
        elif isinstance(mock, FetchResponse):
            mock = {
                "url": mock.url,
                "headers": dict(mock.headers),
                "body": mock.body,
                "status_code": mock.status,
            }
        rec.output = mock
        self.memoize(hashed, {"data": mock})

    def finish(self) -> TestRun:
        result = self.result
        result.steps = [self.state.records[h] for h in self.state.order]
        result.events_sent = list(self.state.events)
        result.published = list(self.state.published)
        result.trace = list(self.state.trace)
        return result


def _prepare(
    fn: Function[Any],
    event: Event | Mapping[str, Any] | None,
    events: Sequence[Event | Mapping[str, Any]] | None,
    client: Inngest | None,
) -> tuple[list[Event], Inngest]:
    raw = (
        list(events)
        if events
        else [event if event is not None else Event(name="inngest/function.invoked")]
    )
    batch = [e if isinstance(e, Event) else Event.model_validate(e) for e in raw]
    default = fn.client or Inngest(
        app_id=fn.id.removesuffix(f"-{fn.local_id}"), is_production=False
    )
    return batch, client or default


def _attempts(fn: Function[Any], attempts: int | None) -> int:
    if attempts is not None:
        return attempts
    retries = fn.options.retries
    return (4 if retries is None else retries) + 1


def _failure_event(
    fn: Function[Any], events: list[Event], run_id: str, error: dict[str, Any]
) -> Event:
    return Event(
        name="inngest/function.failed",
        id=run_id,
        data={
            "function_id": fn.id,
            "run_id": run_id,
            "error": error,
            "event": events[0].model_dump(mode="json"),
            "events": [e.model_dump(mode="json") for e in events],
        },
    )


async def run(
    fn: Function[Any],
    *,
    event: Event | Mapping[str, Any] | None = None,
    events: Sequence[Event | Mapping[str, Any]] | None = None,
    mocks: Mapping[str, object] | None = None,
    attempts: int | None = None,
    client: Inngest | None = None,
    run_id: str = "01TESTRUN0000000000000000",
) -> TestRun:
    """Run ``fn`` to the end in-process (async or sync function) and return what happened.

    ``client`` defaults to the client that created ``fn``, so its middleware runs too.

    ``attempts`` defaults to the function's ``retries`` + 1 (4 + 1 when unset, as on the server).
    """
    batch, client = _prepare(fn, event, events, client)
    return await _run(
        fn, fn.handler, batch, dict(mocks or {}), _attempts(fn, attempts), client, run_id, True
    )


async def _run(
    fn: Function[Any],
    handler: Handler,
    batch: list[Event],
    mocks: dict[str, object],
    max_attempts: int,
    client: Inngest,
    run_id: str,
    allow_failure_handler: bool,
) -> TestRun:
    state = _State(mocks)
    driver = _Driver(fn, handler, batch, state, client, max_attempts, run_id)
    recording = _realtime._recorder.set(state.fake_publish)

    def api_update(target_run: str, body: dict[str, Any]) -> None:
        target = body["target"]
        scope = "step" if "step_id" in target else "run"
        scope = "step_attempt" if "step_attempt" in target else scope
        for update in body["metadata"]:
            driver.result.metadata.append(
                {"via": "api", "run_id": target_run, "target": target, "scope": scope, **update}
            )

    token = API_SINK.set(api_update)
    try:
        while True:
            call, hooks, meta, attempt = driver.request()
            flow = request_flow(client, fn, handler, call, hooks, meta, async_path=fn.is_async)
            if fn.is_async:
                out = await adrive(flow)
            else:
                out = await asyncio.to_thread(drive, flow)
            if driver.settle(out, attempt):
                break
    finally:
        _realtime._recorder.reset(recording)
        API_SINK.reset(token)
    result = driver.finish()
    if result.error is not None and allow_failure_handler and fn.on_failure is not None:
        failed = _failure_event(fn, batch, run_id, result.error)
        result.on_failure = await _run(
            fn, fn.on_failure, [failed], mocks, 1, client, run_id + "F", False
        )
    return result


class RunOptions(TypedDict, total=False):
    """The keyword arguments of ``run``, which ``run_sync`` takes too."""

    event: Event | Mapping[str, Any] | None
    events: Sequence[Event | Mapping[str, Any]] | None
    mocks: Mapping[str, object] | None
    attempts: int | None
    client: Inngest | None
    run_id: str


def run_sync(fn: Function[Any], **options: Unpack[RunOptions]) -> TestRun:
    """Blocking ``run`` (same arguments); usable from plain tests, even while a loop is running."""
    coro = run(fn, **options)
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if not running:  # outside the except block, so errors carry no "no running loop" context
        return asyncio.run(coro)
    box: list[TestRun] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]
