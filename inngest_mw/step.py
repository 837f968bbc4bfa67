"""Step tools: ``Step`` (async) and ``StepSync`` are thin faces over one step flow.

Everything but awaiting lives in ``_StepBase``: building step info and opcodes, decoding memos,
and the sequence each step call runs, written once as a flow (``_drive``): transform_step_input ->
wrap_step( memo | skip | plan/report | on_step_start -> wrap_step_handler -> on_step_* ). A replayed
step with no step hooks is a hash, a dict pop and a return; one with hooks runs them in place and
enters a flow only if a hook must wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as _dt
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    NotRequired,
    Required,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)

from inngest_mw import serializer as _ser
from inngest_mw._drive import Await, Done, Effect, Flow, Invoke, adrive, done, drive
from inngest_mw.ai import AIModel, infer_options
from inngest_mw.checkpoint import Checkpointer
from inngest_mw.durations import DurationLike, format_duration, to_timedelta
from inngest_mw.errors import NonRetriableError, RetryAfterError, StepError, is_final
from inngest_mw.event import Event, EventModel, Sendable, to_events, typed_event
from inngest_mw.fetch import FetchBody, FetchResponse, fetch_options
from inngest_mw.gather import Gate, GatherState
from inngest_mw.hooks import HOOKS
from inngest_mw.interrupts import PlannedInterrupt, ResponseInterrupt, SkipInterrupt
from inngest_mw.memo import Decision, Memo, StepCore, as_memo, hash_step_id
from inngest_mw.metadata import RUNNING, RunningStep
from inngest_mw.pipeline import HookTable, OutputStep, StepInfo, TransformOutputResult
from inngest_mw.realtime import StepRealtime, StepRealtimeSync
from inngest_mw.signals import OnConflict, Signal, signal_options
from inngest_mw.stepkind import StepKind
from inngest_mw.wire import Op, Opcode, serialize_error

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.function import Function

__all__ = [
    "Group",
    "GroupSync",
    "InvokeByIdOptions",
    "InvokeOptions",
    "Step",
    "StepAI",
    "StepAISync",
    "StepSync",
    "WaitForEventOptions",
]

T = TypeVar("T")
M = TypeVar("M", bound=EventModel)
_Opts: TypeAlias = dict[str, Any] | None
_Fn: TypeAlias = Callable[..., Any] | None


class WaitForEventOptions(TypedDict):
    """The options of ``wait_for_event``."""

    event: str
    """The name of the event to wait for."""
    timeout: DurationLike
    """How long to wait before giving up (the step then returns ``None``)."""
    if_exp: NotRequired[str | None]
    """An expression the event must match, e.g. ``"event.data.id == async.data.id"``."""


class InvokeOptions(TypedDict, total=False):
    """The options of ``invoke`` and ``invoke_by_id``."""

    data: Mapping[str, Any] | None
    """The invoked function's ``event.data``."""
    timeout: DurationLike | None
    """How long to wait for its result before the step fails."""
    v: str | None
    """The version of the invoked event's schema, if any."""


class InvokeByIdOptions(InvokeOptions, total=False):
    """The options of ``invoke_by_id``: the function's ID, and its app's when not this one."""

    function_id: Required[str]
    app_id: str | None


# Steps the server resolves: their opcode, the option that names the op (``None``: the step ID),
# and whether their options travel with the op.
_REPORTED: Final[dict[str, tuple[Opcode, str | None, bool]]] = {
    StepKind.SLEEP: (Opcode.SLEEP, "duration", False),
    StepKind.WAIT_FOR_EVENT: (Opcode.WAIT_FOR_EVENT, "event", True),
    StepKind.INVOKE: (Opcode.INVOKE, None, True),
    StepKind.FETCH: (Opcode.GATEWAY, None, True),
    StepKind.AI_INFER: (Opcode.AI_GATEWAY, None, True),
    StepKind.WAIT_FOR_SIGNAL: (Opcode.WAIT_FOR_SIGNAL, "signal", True),
}


def _event_or_none(data: object) -> Event | None:
    return None if data is None else Event.model_validate(data)


def _as_is(data: object) -> object:
    return data


# How a memo becomes the value of the kinds whose value is not the serializer's to decode.
_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {
    StepKind.WAIT_FOR_EVENT: _event_or_none,
    StepKind.FETCH: FetchResponse.from_memo,
    StepKind.WAIT_FOR_SIGNAL: Signal.from_memo,
    StepKind.AI_INFER: _as_is,  # the provider's JSON answer, as the server stored it
}


# The ``opts.type`` a step that runs in the app carries when planned or finished, as the
# TypeScript SDK sends it (the server and its UI tell these steps from ``step.run`` by it).
_RUN_TYPES: Final[dict[str, str]] = {
    StepKind.AI_WRAP: "step.ai.wrap",
    StepKind.REALTIME_PUBLISH: "step.realtime.publish",
}

# Module-level names for what every step call tests: looking a member up on its enum class costs
# about 100 ns in CPython 3.11, a global about 15 ns.
_RUN: Final = StepKind.RUN
_WAIT_FOR_EVENT: Final = StepKind.WAIT_FOR_EVENT
_EXECUTE: Final = Decision.EXECUTE
_STEP_RUN: Final = Opcode.STEP_RUN
_TRANSFORM_STEP_INPUT: Final = HOOKS.TRANSFORM_STEP_INPUT
_WRAP_STEP: Final = HOOKS.WRAP_STEP


class _Pending:
    """A step call that must be driven: a new step (``flow`` is ``None``: its flow is made with
    the face's gate) or a replay whose hooks wait (``flow``, started). ``_begin`` returns the value
    itself for every other replay, so those allocate nothing."""

    __slots__ = ("flow", "info")

    def __init__(self, info: StepInfo, flow: Flow[Any] | None) -> None:
        self.info = info
        self.flow = flow


class _Call:
    """Per-step-call state: whether a new attempt executed, and what it produced."""

    __slots__ = ("executed", "metadata", "output")

    def __init__(self) -> None:
        self.executed = False
        self.output: Any = None
        self.metadata: list[dict[str, Any]] | None = None  # ctx.metadata updates made in it


class _StepBase:
    __slots__ = ("_client", "_core", "_hooks", "_max_attempts", "attempt")

    def __init__(
        self,
        client: Inngest,
        core: StepCore,
        hooks: HookTable,
        attempt: int,
        max_attempts: int | None,
    ) -> None:
        self._client = client
        self._core = core
        self._hooks = hooks
        self.attempt = attempt
        self._max_attempts = max_attempts

    def _resolve(self, step_id: str) -> tuple[str, int]:
        if not isinstance(step_id, str) or not step_id:
            raise ValueError("step ID must be a non-empty string")
        return self._core.resolve_id(step_id)

    def _op(self, info: StepInfo, op: Opcode, name: str, opts: dict[str, Any] | None) -> Op:
        return Op(
            op=op,
            hashed_id=info.hashed_id,
            user_id=info.id,
            index=info.index,
            name=name,
            display_name=info.display_name,
            opts=opts,
        )

    def _report_op(self, info: StepInfo) -> Op:
        """The opcode a step the server resolves reports when reached for the first time."""
        reported = _REPORTED.get(info.kind)
        if reported is None:
            raise AssertionError(f"unknown step kind {info.kind}")
        opcode, name_key, with_opts = reported
        name = info.options[name_key] if name_key else info.id
        return self._op(info, opcode, name, info.options if with_opts else None)

    def _announce(self, info: StepInfo, decision: Decision) -> Op:
        """How a new step that does not run now is reported: its own op, or ``StepPlanned``."""
        if decision is Decision.REPORT:
            return self._report_op(info)
        kind_type = _RUN_TYPES.get(info.kind)
        opts = {"type": kind_type} if kind_type else None
        return self._op(info, Opcode.STEP_PLANNED, info.id, opts)

    def _run_opts(self, info: StepInfo) -> dict[str, Any] | None:
        """A finished run step's options on the wire: its type for ``ai.wrap`` and
        ``realtime.publish``, and ``ai.wrap``'s input (so the server shows the AI call's input
        beside its output)."""
        kind_type = _RUN_TYPES.get(info.kind)
        if kind_type is None:
            return None
        opts: dict[str, Any] = {"type": kind_type}
        if info.kind != StepKind.AI_WRAP:
            return opts
        # An input that is not JSON is not shown; the step still runs.
        with contextlib.suppress(Exception):
            opts["input"] = _ser.encode(self._client, list(info.input))
        return opts

    def _plan_or_report(self, info: StepInfo, decision: Decision) -> BaseException:
        if decision is Decision.SKIP:
            return SkipInterrupt()
        self._core.add(self._announce(info, decision))
        return self._core.interrupt_for_new_step()

    def _memo_value(self, kind: StepKind, memo: Memo, output_type: object) -> Any:
        if memo.error is not None:
            err = memo.error
            raise StepError(
                str(err.get("message", "")), str(err.get("name", "Error")), err.get("stack")
            )
        data = memo.data
        if kind is not _RUN:  # (hashing a StepKind is a Python call: most steps skip it)
            if kind is _WAIT_FOR_EVENT and output_type is not None and data is not None:
                return typed_event(Event.model_validate(data), cast(type[EventModel], output_type))
            decode = _DECODERS.get(kind)
            if decode is not None:
                return decode(data)
        if output_type is None and self._client.serializer is None:
            return data
        return _ser.decode(self._client, data, output_type)

    def _finish_new(self, info: StepInfo, call: _Call) -> ResponseInterrupt:
        try:
            data = _ser.encode(self._client, call.output)
        except Exception as exc:
            return self._fail_new(
                info,
                NonRetriableError(
                    f"step {info.id!r} returned a value that is not JSON-serializable: {exc}"
                ),
                call,
            )
        op = self._op(info, _STEP_RUN, info.id, self._run_opts(info))
        op.data = data
        op.metadata = call.metadata
        self._core.add(op)
        return ResponseInterrupt()

    def _fail_new(
        self, info: StepInfo, exc: BaseException, call: _Call | None = None
    ) -> ResponseInterrupt:
        final = self._error_is_final(exc)
        op = self._op(info, Opcode.STEP_FAILED if final else Opcode.STEP_ERROR, info.id, None)
        op.error = serialize_error(exc)
        op.exception = exc
        op.metadata = call.metadata if call is not None else None
        self._core.add(op)
        if isinstance(exc, RetryAfterError):
            self._core.retry_after = exc.header_value()
        return ResponseInterrupt()

    def _error_is_final(self, exc: BaseException) -> bool:
        return is_final(exc, self.attempt, self._max_attempts)

    @staticmethod
    def _sleep_options(duration: DurationLike) -> dict[str, Any]:
        return {"duration": format_duration(to_timedelta(duration))}

    @staticmethod
    def _sleep_until_options(until: _dt.datetime | str) -> dict[str, Any]:
        if isinstance(until, str):
            until = _dt.datetime.fromisoformat(until)
        if until.tzinfo is None:
            until = until.replace(tzinfo=_dt.UTC)
        stamp = until.astimezone(_dt.UTC).isoformat(timespec="milliseconds")
        return {"duration": stamp.replace("+00:00", "Z")}

    @staticmethod
    def _wait_options(
        *, event: str | type[EventModel], timeout: DurationLike, if_exp: str | None = None
    ) -> tuple[dict[str, Any], type[EventModel] | None]:
        """The options, and the model the event is validated as (when ``event`` is one)."""
        model = event if isinstance(event, type) and issubclass(event, EventModel) else None
        name = model.event_name if model is not None else event
        opts: dict[str, Any] = {"event": name, "timeout": format_duration(to_timedelta(timeout))}
        if if_exp is not None:
            opts["if"] = if_exp
        return opts, model

    def _invoke_options(
        self,
        function: Function[Any] | None,
        *,
        function_id: str | None = None,
        app_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> tuple[dict[str, Any], object]:
        """The invoke step's options and the output type its result is decoded to."""
        if function is not None:
            target, output_type = function.id, function.output_type
        elif function_id:
            app = app_id or self._client.app_id
            target = function_id if function_id.startswith(f"{app}-") else f"{app}-{function_id}"
            output_type = None
        else:
            raise ValueError("invoke needs a function or a function_id")
        payload: dict[str, Any] = {"data": dict(data or {})}
        if v is not None:
            payload["v"] = v
        opts: dict[str, Any] = {"function_id": target, "payload": payload}
        if timeout is not None:
            opts["timeout"] = format_duration(to_timedelta(timeout))
        return opts, output_type

    def _begin(
        self,
        kind: StepKind,
        step_id: str,
        options: dict[str, Any] | None,
        args: Sequence[Any],
        output_type: object,
    ) -> Any:
        """A replayed step's value (its hooks, if any, run here), or a ``_Pending`` for a new
        step or a replay whose hooks must wait.

        Every step call of a request comes through here, most of them replays, so this is
        written flat: the nesting check, ID resolution, memo lookup and step info inline (a
        plain replay, with no step hook to tell, builds no step info at all).
        """
        if _in_handler.get():
            self._check_not_nested()
        core = self._core
        if type(step_id) is not str or not step_id:
            hashed, index = self._resolve(step_id)  # raises, naming the problem
        else:  # ``core.resolve_id`` written out
            counts = core.id_counts
            index = counts.get(step_id, 0)
            counts[step_id] = index + 1
            hashed = hash_step_id(f"{step_id}:{index}" if index else step_id)
        memo = core.memos.pop(hashed, None)
        hooks = self._hooks
        # A plain replay: no step hook to tell, nor a boundary hook to tell that this was the last.
        if (
            memo is not None
            and not hooks.step_hooks
            and (core.memos or core.boundary_done or not hooks.boundary_hooks)
        ):
            if not core.memos:
                core.boundary_done = True
            plain = kind is _RUN and output_type is None and self._client.serializer is None
            if plain and type(memo) is dict:  # the usual replay: the stored JSON value as it is
                return memo["data"]
            return self._memo_value(kind, as_memo(memo), output_type)
        info = StepInfo(
            step_id,
            hashed,
            kind,
            index,
            step_id,
            options or {},
            list(args),
            self.attempt,
            memo is not None,
        )
        if memo is None:
            return _Pending(info, None)
        return self._replay(info, as_memo(memo), output_type)

    def _replay(self, info: StepInfo, memo: Memo, output_type: object) -> Any:
        """A replayed step through its hooks, run here: its value, or a ``_Pending`` holding the
        rest of the flow if a hook must wait.

        The face opens a gathered branch's gate only for that rest: up to the first wait nothing
        else runs, so nobody can tell the difference (and a replay that never waits is, for
        ``asyncio.gather``, what a replay without hooks is: no step call in flight).
        """
        hooks = self._hooks
        replayed = functools.partial(self._replayed, info, memo, output_type)
        if _TRANSFORM_STEP_INPUT in hooks.hooks:
            transformed: object = hooks.call(_TRANSFORM_STEP_INPUT, info)
            if type(transformed) is not Done:
                return _Pending(info, _then(cast("Flow[None]", transformed), hooks, info, replayed))
        flow: object = hooks.wrap(_WRAP_STEP, info, replayed)
        if type(flow) is Done:
            return flow.value
        return _Pending(info, cast("Flow[Any]", flow))

    def _new(
        self,
        info: StepInfo,
        handler: Callable[..., Any] | None,
        output_type: object,
        gate: Gate | None,
    ) -> Flow[Any]:
        """A step this request reaches for the first time, through its hooks."""
        hooks = self._hooks
        if _TRANSFORM_STEP_INPUT in hooks.hooks:
            transformed: object = hooks.call(_TRANSFORM_STEP_INPUT, info)
            if type(transformed) is not Done:  # (a chain that is over needs no ``yield from``)
                yield from cast("Flow[None]", transformed)
        call = _Call()
        inner = functools.partial(self._inner, info, handler, output_type, call, gate)
        try:
            wrapped: object = hooks.wrap(_WRAP_STEP, info, inner)
            if type(wrapped) is Done:
                value = wrapped.value
            else:
                value = yield from cast("Flow[Any]", wrapped)
        except Exception as exc:
            if call.executed:
                raise self._fail_new(info, exc, call) from None
            raise
        if call.executed:
            checkpoint = self._core.checkpoint
            alone = gate is None and not self._core.parallel_depth  # not one of parallel steps
            if checkpoint is not None and alone and checkpoint.usable():
                return (yield from self._checkpointed(info, call, checkpoint))
            raise self._finish_new(info, call)
        return value

    def _checkpointed(self, info: StepInfo, call: _Call, checkpoint: Checkpointer) -> Flow[Any]:
        """Report a step that ran to the server and go on with its value in this request; if
        the server does not take it, the step ends the request as it would have."""
        core, hooks = self._core, self._hooks
        interrupt = self._finish_new(info, call)
        op = core.ops[-1]
        if op.op is not Opcode.STEP_RUN:  # its output cannot be sent: it fails as usual
            raise interrupt
        if hooks.has(HOOKS.TRANSFORM_OUTPUT):
            # What leaves the app goes through transform_output (encryption seals it here), once.
            result = TransformOutputResult()
            result.output = op.data
            result.step = OutputStep(op.user_id, op.hashed_id, op.op, op.opts)
            yield from hooks.call(HOOKS.TRANSFORM_OUTPUT, result)
            if result.has_output():
                op.data = result.output
            core.output_transformed = True
        if not (yield from checkpoint.send(op)):
            raise interrupt
        core.ops.pop()
        core.output_transformed = False
        return call.output

    def _replayed(self, info: StepInfo, memo: Memo, output_type: object) -> Flow[Any]:
        """Inside ``wrap_step`` of a replayed step: its value, after the boundary hooks when this
        is the last memo (the only case that needs a flow)."""
        core = self._core
        if not core.memos and not core.boundary_done:  # the last memo: the boundary is due
            core.boundary_done = True
            if self._hooks.boundary_hooks:
                return self._after_boundary(info, memo, output_type)
        return done(self._memo_value(info.kind, memo, output_type))

    def _after_boundary(self, info: StepInfo, memo: Memo, output_type: object) -> Flow[Any]:
        yield from _boundary(self._hooks)
        return self._memo_value(info.kind, memo, output_type)

    def _inner(
        self,
        info: StepInfo,
        handler: Callable[..., Any] | None,
        output_type: object,
        call: _Call,
        gate: Gate | None,
    ) -> Flow[Any]:
        """Inside ``wrap_step``: the decision for a new step (``_replayed`` serves a memo)."""
        core, hooks = self._core, self._hooks
        if core.boundary_due() and hooks.boundary_hooks:
            yield from _boundary(hooks)
        decision = core.decide(info.hashed_id, info.kind, info.id)
        if gate is not None:
            decision = yield _Gathered(self, gate, info, decision)
        if decision is not _EXECUTE or handler is None:
            raise self._plan_or_report(info, decision)
        if HOOKS.ON_STEP_START in hooks.hooks:
            yield from hooks.observe(HOOKS.ON_STEP_START, info)
        call.executed = True
        try:
            out = yield from hooks.wrap(
                HOOKS.WRAP_STEP_HANDLER, info, functools.partial(_run_handler, handler, info, call)
            )
        except Exception as exc:
            if HOOKS.ON_STEP_ERROR in hooks.hooks:
                yield from hooks.observe(HOOKS.ON_STEP_ERROR, info, exc, self._error_is_final(exc))
            raise
        call.output = out
        if HOOKS.ON_STEP_COMPLETE in hooks.hooks:
            yield from hooks.observe(HOOKS.ON_STEP_COMPLETE, info, out)
        return out

    def _check_not_nested(self) -> None:
        if _in_handler.get():
            raise NonRetriableError(
                "a step was called inside another step's handler; call steps only from the "
                "function body"
            )


class Step(_StepBase):
    """Async step tools (``ctx.step``); every method is a durable, memoized step."""

    __slots__ = ()

    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[..., Awaitable[T]],
        *args: Any,
        output_type: object = None,
    ) -> T: ...
    @overload
    async def run(
        self, step_id: str, handler: Callable[..., T], *args: Any, output_type: object = None
    ) -> T: ...
    async def run(
        self,
        step_id: str,
        handler: Callable[..., Any],
        *args: Any,
        output_type: object = None,
    ) -> Any:
        """Run ``handler(*args)`` once per run and memoize its JSON-serializable result."""
        begun = self._begin(_RUN, step_id, None, args, output_type)
        if type(begun) is not _Pending:  # a replay: no second coroutine for the common case
            return begun
        return await self._pending(begun, handler, output_type)

    async def send_event(self, step_id: str, events: Sendable) -> list[str]:
        """Send events from a step (sent once, memoized), returning their IDs."""
        batch = to_events(events)

        async def send(batch: list[Event]) -> list[str]:
            return await self._client._send_with(batch, self._hooks)

        return cast(
            list[str], await self._step(StepKind.SEND_EVENT, step_id, None, (batch,), send, None)
        )

    async def sleep(self, step_id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` (timedelta, "1h30m", or milliseconds)."""
        await self._step(StepKind.SLEEP, step_id, self._sleep_options(duration), (), None, None)

    async def sleep_until(self, step_id: str, until: _dt.datetime | str) -> None:
        """Pause the run until ``until`` (naive datetimes are UTC)."""
        opts = self._sleep_until_options(until)
        await self._step(StepKind.SLEEP, step_id, opts, (), None, None)

    @overload
    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: type[M],
        timeout: DurationLike,
        if_exp: str | None = None,
    ) -> Event[M] | None: ...
    @overload
    async def wait_for_event(
        self, step_id: str, **options: Unpack[WaitForEventOptions]
    ) -> Event | None: ...
    async def wait_for_event(self, step_id: str, **options: Any) -> Any:
        """Wait for an event named ``event`` matching ``if_exp``; ``None`` after ``timeout``.

        With an ``EventModel`` as ``event``, the event's data is validated as it.
        """
        opts, model = self._wait_options(**options)
        return await self._step(StepKind.WAIT_FOR_EVENT, step_id, opts, (), None, model)

    async def invoke(
        self, step_id: str, *, function: Function[T], **options: Unpack[InvokeOptions]
    ) -> T:
        """Run another function and wait for its result (its error raises ``StepError``)."""
        opts, output_type = self._invoke_options(function, **options)
        return cast(T, await self._step(StepKind.INVOKE, step_id, opts, (), None, output_type))

    async def invoke_by_id(self, step_id: str, **options: Unpack[InvokeByIdOptions]) -> Any:
        """``invoke`` by ID (``app_id`` defaults to this client's app)."""
        opts, _ = self._invoke_options(None, **options)
        return await self._step(StepKind.INVOKE, step_id, opts, (), None, None)

    async def fetch(
        self,
        step_id: str,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: FetchBody = None,
    ) -> FetchResponse:
        """Have the server make this HTTP request (durably, once) and return its answer.

        Any status is an answer; only a request that gets none is retried and then fails the step.
        """
        opts = fetch_options(url, method, headers, body)
        return cast(FetchResponse, await self._step(StepKind.FETCH, step_id, opts, (), None, None))

    async def wait_for_signal(
        self,
        step_id: str,
        *,
        signal: str,
        timeout: DurationLike,
        on_conflict: OnConflict = "fail",
    ) -> Signal | None:
        """Wait until ``client.send_signal(signal, data)`` resumes this run; ``None`` after
        ``timeout``. Another run already waiting on ``signal`` fails this step, unless
        ``on_conflict="replace"`` takes the signal over."""
        opts = signal_options(signal, timeout, on_conflict)
        return cast(
            Signal | None, await self._step(StepKind.WAIT_FOR_SIGNAL, step_id, opts, (), None, None)
        )

    @property
    def ai(self) -> StepAI:
        """AI steps: ``infer`` (the server calls the model) and ``wrap`` (a recorded AI call)."""
        return StepAI(self)

    @property
    def realtime(self) -> StepRealtime:
        """Realtime steps: ``publish`` (a message published once per run)."""
        return StepRealtime(self)

    async def _step(
        self,
        kind: StepKind,
        step_id: str,
        options: _Opts,
        args: Sequence[Any],
        fn: _Fn,
        out: object,
    ) -> Any:
        begun = self._begin(kind, step_id, options, args, out)
        if type(begun) is not _Pending:
            return begun
        return await self._pending(begun, fn, out)

    async def _pending(self, begun: _Pending, fn: _Fn, out: object) -> Any:
        """A new step call, or a replay whose hooks wait."""
        core = self._core
        task = asyncio.current_task()
        gate = None
        if task is not core.main_task and core.main_task is not None and not core.parallel_depth:
            if core.gather is None:  # a gathered branch: its call is counted until it decides
                core.gather = GatherState()
            gate = Gate(core.gather, cast("asyncio.Task[Any]", task))
        try:
            flow = begun.flow or self._new(begun.info, fn, out, gate)
            return await adrive(flow)
        finally:
            if gate is not None:
                gate.close()


class _Gathered(Effect):
    """A gathered branch reached a new step: the async face decides with its siblings."""

    __slots__ = ("decision", "gate", "info", "step")

    def __init__(self, step: _StepBase, gate: Gate, info: StepInfo, decision: Decision) -> None:
        self.step, self.gate, self.info, self.decision = step, gate, info, decision

    def run(self) -> Any:
        raise AssertionError("sync functions have no gathered branches")

    async def arun(self) -> Any:
        core = self.step._core
        return await self.gate.decide(
            self.info, self.decision, core.target is not None, self.step._announce, core.add
        )


def _then(
    transformed: Flow[None], hooks: HookTable, info: StepInfo, replayed: Callable[[], Flow[Any]]
) -> Flow[Any]:
    """A replay whose ``transform_step_input`` waits: wait for it, then ``wrap_step``."""
    yield from transformed
    return (yield from hooks.wrap(HOOKS.WRAP_STEP, info, replayed))


_in_handler: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "inngest_mw_in_step", default=False
)


class StepSync(_StepBase):
    """Sync step tools (``ctx.step`` in a sync function)."""

    __slots__ = ()

    def run(
        self, step_id: str, handler: Callable[..., T], *args: Any, output_type: object = None
    ) -> T:
        """Run ``handler(*args)`` once per run and memoize its JSON-serializable result."""
        begun = self._begin(_RUN, step_id, None, args, output_type)
        if type(begun) is not _Pending:  # a replay
            return cast(T, begun)
        return cast(T, self._pending(begun, step_id, handler, output_type))

    def send_event(self, step_id: str, events: Sendable) -> list[str]:
        """Send events from a step (sent once, memoized), returning their IDs."""
        batch = to_events(events)

        def send(batch: list[Event]) -> list[str]:
            return self._client._send_with_sync(batch, self._hooks)

        return cast(list[str], self._step(StepKind.SEND_EVENT, step_id, None, (batch,), send, None))

    def sleep(self, step_id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` (timedelta, "1h30m", or milliseconds)."""
        self._step(StepKind.SLEEP, step_id, self._sleep_options(duration), (), None, None)

    def sleep_until(self, step_id: str, until: _dt.datetime | str) -> None:
        """Pause the run until ``until`` (naive datetimes are UTC)."""
        self._step(StepKind.SLEEP, step_id, self._sleep_until_options(until), (), None, None)

    @overload
    def wait_for_event(
        self,
        step_id: str,
        *,
        event: type[M],
        timeout: DurationLike,
        if_exp: str | None = None,
    ) -> Event[M] | None: ...
    @overload
    def wait_for_event(
        self, step_id: str, **options: Unpack[WaitForEventOptions]
    ) -> Event | None: ...
    def wait_for_event(self, step_id: str, **options: Any) -> Any:
        """Wait for an event named ``event`` matching ``if_exp``; ``None`` after ``timeout``.

        With an ``EventModel`` as ``event``, the event's data is validated as it.
        """
        opts, model = self._wait_options(**options)
        return self._step(StepKind.WAIT_FOR_EVENT, step_id, opts, (), None, model)

    def invoke(self, step_id: str, *, function: Function[T], **options: Unpack[InvokeOptions]) -> T:
        """Run another function and wait for its result (its error raises ``StepError``)."""
        opts, output_type = self._invoke_options(function, **options)
        return cast(T, self._step(StepKind.INVOKE, step_id, opts, (), None, output_type))

    def invoke_by_id(self, step_id: str, **options: Unpack[InvokeByIdOptions]) -> Any:
        """``invoke`` by ID (``app_id`` defaults to this client's app)."""
        opts, _ = self._invoke_options(None, **options)
        return self._step(StepKind.INVOKE, step_id, opts, (), None, None)

    def fetch(
        self,
        step_id: str,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: FetchBody = None,
    ) -> FetchResponse:
        """Have the server make this HTTP request (durably, once) and return its answer.

        Any status is an answer; only a request that gets none is retried and then fails the step.
        """
        opts = fetch_options(url, method, headers, body)
        return cast(FetchResponse, self._step(StepKind.FETCH, step_id, opts, (), None, None))

    def wait_for_signal(
        self,
        step_id: str,
        *,
        signal: str,
        timeout: DurationLike,
        on_conflict: OnConflict = "fail",
    ) -> Signal | None:
        """Wait until ``client.send_signal(signal, data)`` resumes this run; ``None`` after
        ``timeout``. Another run already waiting on ``signal`` fails this step, unless
        ``on_conflict="replace"`` takes the signal over."""
        opts = signal_options(signal, timeout, on_conflict)
        return cast(
            Signal | None, self._step(StepKind.WAIT_FOR_SIGNAL, step_id, opts, (), None, None)
        )

    @property
    def ai(self) -> StepAISync:
        """AI steps: ``infer`` (the server calls the model) and ``wrap`` (a recorded AI call)."""
        return StepAISync(self)

    @property
    def realtime(self) -> StepRealtimeSync:
        """Realtime steps: ``publish`` (a message published once per run)."""
        return StepRealtimeSync(self)

    def _step(
        self,
        kind: StepKind,
        step_id: str,
        options: _Opts,
        args: Sequence[Any],
        fn: _Fn,
        out: object,
    ) -> Any:
        begun = self._begin(kind, step_id, options, args, out)
        if type(begun) is not _Pending:
            return begun
        return self._pending(begun, step_id, fn, out)

    def _pending(self, begun: _Pending, step_id: str, fn: _Fn, out: object) -> Any:
        """A new step call, or a replay whose hooks wait."""
        if begun.flow is not None:
            return drive(begun.flow)
        if fn is not None and inspect.iscoroutinefunction(fn):  # a new step: it may run
            raise TypeError(f"step {step_id!r}: a sync function cannot run an async step handler")
        return drive(self._new(begun.info, fn, out, None))


class StepAI:
    """``ctx.step.ai`` of an async function."""

    __slots__ = ("_step",)

    def __init__(self, step: Step) -> None:
        self._step = step

    async def infer(
        self, step_id: str, *, model: AIModel, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Have the server send ``body`` to ``model`` and return the provider's JSON answer.

        The request is made once per run (retried only when it fails), outside the app.
        """
        opts = infer_options(model, body)
        return cast(
            dict[str, Any], await self._step._step(StepKind.AI_INFER, step_id, opts, (), None, None)
        )

    @overload
    async def wrap(
        self,
        step_id: str,
        handler: Callable[..., Awaitable[T]],
        *args: Any,
        output_type: object = None,
    ) -> T: ...
    @overload
    async def wrap(
        self, step_id: str, handler: Callable[..., T], *args: Any, output_type: object = None
    ) -> T: ...
    async def wrap(
        self,
        step_id: str,
        handler: Callable[..., Any],
        *args: Any,
        output_type: object = None,
    ) -> Any:
        """``step.run`` of an AI call made by the app: its input and output are recorded as one."""
        return await self._step._step(StepKind.AI_WRAP, step_id, None, args, handler, output_type)


class StepAISync:
    """``ctx.step.ai`` of a sync function."""

    __slots__ = ("_step",)

    def __init__(self, step: StepSync) -> None:
        self._step = step

    def infer(self, step_id: str, *, model: AIModel, body: Mapping[str, Any]) -> dict[str, Any]:
        """Have the server send ``body`` to ``model`` and return the provider's JSON answer.

        The request is made once per run (retried only when it fails), outside the app.
        """
        opts = infer_options(model, body)
        return cast(
            dict[str, Any], self._step._step(StepKind.AI_INFER, step_id, opts, (), None, None)
        )

    def wrap(
        self, step_id: str, handler: Callable[..., T], *args: Any, output_type: object = None
    ) -> T:
        """``step.run`` of an AI call made by the app: its input and output are recorded as one."""
        return cast(
            T, self._step._step(StepKind.AI_WRAP, step_id, None, args, handler, output_type)
        )


def _boundary(hooks: HookTable) -> Flow[None]:
    """``after_memoization`` then ``before_execution``: once per request, at the boundary."""
    if HOOKS.AFTER_MEMOIZATION in hooks.hooks:
        yield from hooks.call(HOOKS.AFTER_MEMOIZATION)
    if HOOKS.BEFORE_EXECUTION in hooks.hooks:
        yield from hooks.call(HOOKS.BEFORE_EXECUTION)


def _run_handler(handler: Callable[..., Any], info: StepInfo, call: _Call) -> Flow[Any]:
    token = _in_handler.set(True)
    running = RunningStep(info)
    running_token = RUNNING.set(running)
    try:
        result = handler(*info.input)  # called here: most step handlers return a plain value
        if inspect.isawaitable(result):  # an async one: the face awaits it
            result = yield Await(cast("Coroutine[Any, Any, Any]", result))
        return result
    finally:
        RUNNING.reset(running_token)
        _in_handler.reset(token)
        if running.updates:
            call.metadata = (call.metadata or []) + running.updates


class _GroupBase:
    __slots__ = ("_core",)

    def __init__(self, core: StepCore) -> None:
        self._core = core

    def _parallel(self, callables: Sequence[Callable[[], Any]]) -> Flow[tuple[Any, ...]]:
        """Each branch runs until its first new step, which is planned; then all are reported."""
        core = self._core
        results: list[Any] = []
        pending = False
        core.parallel_depth += 1
        try:
            for branch in callables:
                try:
                    results.append((yield Invoke(branch)))
                except (PlannedInterrupt, SkipInterrupt):
                    pending = True
        finally:
            core.parallel_depth -= 1
        if pending:
            if core.ops:
                raise PlannedInterrupt() if core.parallel_depth else ResponseInterrupt()
            raise SkipInterrupt()
        return tuple(results)


class Group(_GroupBase):
    """``ctx.group.parallel((lambda: ctx.step.run("a", ...), ...))``: steps planned together."""

    __slots__ = ()

    async def parallel(self, callables: Sequence[Callable[[], Awaitable[T]]]) -> tuple[T, ...]:
        return await adrive(self._parallel(callables))


class GroupSync(_GroupBase):
    """Sync ``ctx.group.parallel``."""

    __slots__ = ()

    def parallel(self, callables: Sequence[Callable[[], T]]) -> tuple[T, ...]:
        return drive(self._parallel(callables))
