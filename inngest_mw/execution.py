"""One call request through the pipeline: build the context, run the handler, collect the outcome.

The sequence (docs/ARCHITECTURE.md) is one flow, ``request_flow``, that the handler and the testing
toolkit run with ``_drive.drive`` (sync functions) or ``_drive.adrive`` (async functions); the colour
only picks the context it builds (``Context`` with async step tools, or ``ContextSync``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pydantic

from inngest_mw import serializer as _ser
from inngest_mw._const import MAX_STEPS_PER_RUN, UNSPECIFIED_STEP_ID
from inngest_mw._drive import Effect, Flow
from inngest_mw.checkpoint import Checkpointer
from inngest_mw.context import Context, ContextSync
from inngest_mw.errors import Error, NonRetriableError, is_final
from inngest_mw.event import Event, EventModel, typed_event
from inngest_mw.gather import release
from inngest_mw.hooks import HOOKS
from inngest_mw.interrupts import PlannedInterrupt, ResponseInterrupt, SkipInterrupt
from inngest_mw.memo import MemoEntry, StepCore, StepMemos, parse_memos
from inngest_mw.metadata import Metadata, MetadataSync
from inngest_mw.pipeline import EMPTY, HookTable, OutputStep, TransformOutputResult
from inngest_mw.step import Group, GroupSync, Step, StepSync, _boundary
from inngest_mw.wire import Op, serialize_error

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.function import Function, Handler, HandlerAsync, HandlerSync

__all__ = [
    "BodyError",
    "CallRequest",
    "CallResult",
    "parse_call",
    "request_flow",
]


class BodyError(Error):
    """The call request body is not what the protocol defines."""

    code = "body_invalid"
    retriable = False


@dataclass(slots=True)
class CallRequest:
    """The parts of a call body the SDK uses, parsed once."""

    event: Event
    events: list[Event]
    steps: dict[str, MemoEntry]
    run_id: str
    attempt: int
    max_attempts: int | None
    disable_immediate: bool
    use_api: bool
    raw_steps: Any = None
    fn_uuid: str | None = None
    """The server's internal ID of the function (``ctx.fn_id``); checkpoints name it."""
    qi_id: str | None = None


def _field(mapping: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = mapping.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BodyError(f"call body field {name!r} must be {kind.__name__}")
    return value


def parse_call(body: object) -> CallRequest:
    """Validate and unpack a call body; ``BodyError`` says which field is wrong."""
    if type(body) is not dict:
        raise BodyError("call body must be a JSON object")
    ctx = _field(body, "ctx", dict, {})
    use_api = bool(body.get("use_api") or ctx.get("use_api"))
    try:
        raw_event = body.get("event")
        raw_events = body.get("events") or ([raw_event] if raw_event else [])
        if type(raw_events) is not list:
            raise BodyError("call body field 'events' must be a list")
        events = [_validate_event(e) for e in raw_events]
        if events and raw_event == raw_events[0]:  # as the server sends it: validated once
            event: Event | None = events[0]
        else:
            event = _validate_event(raw_event) if raw_event else None
    except pydantic.ValidationError as exc:
        raise BodyError(f"call body has an invalid event: {exc.errors()[0]['msg']}") from None
    if event is None:
        if events:
            event = events[0]
        elif use_api:
            event = Event(name="inngest/use_api")
        else:
            raise BodyError("call body has no 'event'")
    raw_steps = body.get("steps")
    if raw_steps is not None and type(raw_steps) is not dict:
        raise BodyError("call body field 'steps' must be an object")
    max_attempts = ctx.get("max_attempts")
    fn_uuid, qi_id = ctx.get("fn_id"), ctx.get("qi_id")
    return CallRequest(
        event,
        events or [event],
        parse_memos(raw_steps),
        str(_field(ctx, "run_id", str, "")),
        _field(ctx, "attempt", int, 0),
        max_attempts if type(max_attempts) is int else None,
        bool(ctx.get("disable_immediate_execution", False)),
        use_api,
        raw_steps,
        fn_uuid if type(fn_uuid) is str else None,
        qi_id if type(qi_id) is str else None,
    )


_validate_event = Event.__pydantic_validator__.validate_python
"""``Event.model_validate`` without its wrapper (two events per call request)."""


@dataclass(slots=True)
class CallResult:
    """What the handler turns into a response."""

    output: Any = EMPTY
    error: BaseException | None = None
    ops: list[Op] = field(default_factory=list)
    retry_after: str | None = None
    step_not_found: str | None = None
    found_steps: list[str] = field(default_factory=list)
    final_attempt: bool = False


@dataclass(slots=True)
class RequestMeta:
    """Request-level facts the context exposes."""

    step_id: str = UNSPECIFIED_STEP_ID
    request_id: str | None = None
    job_id: str | None = None
    generation_id: str | None = None


def _core(client: Inngest, fn: Function[Any], call: CallRequest, meta: RequestMeta) -> StepCore:
    target = None if meta.step_id == UNSPECIFIED_STEP_ID else meta.step_id
    core = StepCore(
        memos=call.steps,
        target=target,
        run_id=call.run_id,
        disable_immediate=call.disable_immediate,
    )
    # As the server expects (and the TypeScript SDK does): only a discovery request of a run
    # whose steps are not being planned in parallel runs its steps back to back.
    allowed = target is None and not call.disable_immediate
    enabled = client.checkpointing if fn.checkpointing is None else fn.checkpointing
    if enabled and allowed and call.fn_uuid and call.run_id:
        core.checkpoint = Checkpointer(
            client,
            call.run_id,
            call.fn_uuid,
            qi_id=call.qi_id,
            request_id=meta.request_id,
            generation_id=meta.generation_id,
        )
    return core


def _context(
    client: Inngest,
    fn: Function[Any],
    call: CallRequest,
    meta: RequestMeta,
    core: StepCore,
    hooks: HookTable,
    async_path: bool,
) -> Context | ContextSync:
    """The context of the face's colour: async step tools in a ``Context``, else sync ones."""
    args = (client, core, hooks, call.attempt, call.max_attempts)
    fields: dict[str, Any] = {
        "event": call.event,
        "events": call.events,
        "run_id": call.run_id,
        "attempt": call.attempt,
        "max_attempts": call.max_attempts,
        "function_id": fn.id,
        "logger": client.logger,
        "request_id": meta.request_id,
        "job_id": meta.job_id,
    }
    if async_path:
        metadata = Metadata(client, call.run_id, call.attempt)
        return Context(**fields, step=Step(*args), group=Group(core), metadata=metadata)
    metadata_sync = MetadataSync(client, call.run_id, call.attempt)
    return ContextSync(
        **fields, step=StepSync(*args), group=GroupSync(core), metadata=metadata_sync
    )


def _is_first_request(call: CallRequest, core: StepCore) -> bool:
    return call.attempt == 0 and not call.steps and core.target is None


def _settle(core: StepCore, result: TransformOutputResult) -> CallResult:
    """Turn the handler's outcome into a ``CallResult`` before ``transform_output`` runs."""
    out = CallResult(found_steps=list(core.found), retry_after=core.retry_after)
    if core.ops:
        out.ops = core.ops
        if len(core.ops) > MAX_STEPS_PER_RUN:
            out.ops = []
            result.error = NonRetriableError(
                f"function reported {len(core.ops)} steps at once; the limit is {MAX_STEPS_PER_RUN}"
            )
        elif len(core.ops) == 1:
            op = core.ops[0]
            result.step = OutputStep(op.user_id, op.hashed_id, op.op, op.opts)
            if op.has_data:
                result.output = op.data
            if op.exception is not None:
                result.error = op.exception
    elif core.target is not None and not core.target_found and result.error is None:
        out.step_not_found = core.target
    return out


def _apply_output(result: TransformOutputResult, out: CallResult) -> CallResult:
    """Carry ``transform_output``'s changes into the result."""
    if len(out.ops) == 1:
        op = out.ops[0]
        if op.has_data and result.has_output():
            op.data = result.output
        if (
            op.exception is not None
            and result.error is not None
            and result.error is not op.exception
        ):
            op.error = serialize_error(result.error)
        return out
    if out.ops:
        return out
    if result.error is not None:
        out.error = result.error
    elif result.has_output():
        out.output = result.output
    else:
        out.output = None
    return out


def _encode_output(client: Inngest, fn: Function[Any], value: Any) -> Any:
    try:
        return _ser.encode(client, value, fn.output_type)
    except Exception as exc:
        raise NonRetriableError(
            f"function {fn.id!r} returned a value that is not JSON-serializable: {exc}"
        ) from exc


class _RunHandler(Effect):
    """Call the user's handler. On the async face its task is the one ``asyncio.gather`` branches
    are told apart from, and branches still parked when it ends are collected."""

    __slots__ = ("core", "ctx", "handler")

    def __init__(self, handler: Handler, ctx: Context | ContextSync, core: StepCore) -> None:
        self.handler, self.ctx, self.core = handler, ctx, core

    def run(self) -> Any:
        return cast("HandlerSync", self.handler)(cast(ContextSync, self.ctx))

    async def arun(self) -> Any:
        core = self.core
        core.main_task = asyncio.current_task()
        try:
            return await cast("HandlerAsync", self.handler)(cast(Context, self.ctx))
        finally:
            if core.gather is not None:
                await release(core.gather)


def _model_of(fn: Function[Any], handler: Handler) -> type[EventModel] | None:
    """The model that types the event: the function's, not its ``on_failure`` handler's."""
    return fn.event_model if handler is fn.handler else None


def _call_handler(
    handler: Handler, ctx: Context | ContextSync, core: StepCore, model: type[EventModel] | None
) -> Flow[Any]:
    if model is not None:
        # After transform_input (which may decrypt the event), inside the function: an event that
        # does not match fails the run, non-retriably, naming the field.
        typed: Any = ctx  # Context[dict] becomes Context[model]: what the handler annotates
        typed.event = typed_event(ctx.event, model)
        typed.events = [typed_event(e, model) for e in ctx.events]
    return (yield _RunHandler(handler, ctx, core))


def request_flow(
    client: Inngest,
    fn: Function[Any],
    handler: Handler,
    call: CallRequest,
    hooks: HookTable,
    meta: RequestMeta,
    *,
    async_path: bool,
) -> Flow[CallResult]:
    """The whole sequence of one call request, from ``transform_input`` to ``before_response``."""
    core = _core(client, fn, call, meta)
    ctx = _context(client, fn, call, meta, core, hooks, async_path)
    table = hooks.hooks  # (``spec in table``: ``hooks.has`` without a call, seven times a request)
    if HOOKS.TRANSFORM_INPUT in table:
        yield from hooks.call(HOOKS.TRANSFORM_INPUT, ctx, fn, StepMemos(core.memos))
    if not core.memos and core.boundary_due() and hooks.boundary_hooks:
        yield from _boundary(hooks)
    if HOOKS.ON_RUN_START in table and _is_first_request(call, core):
        yield from hooks.observe(HOOKS.ON_RUN_START, ctx)
    result = TransformOutputResult()
    returned = False
    try:
        value = yield from hooks.wrap(
            HOOKS.WRAP_FUNCTION,
            ctx,
            functools.partial(_call_handler, handler, ctx, core, _model_of(fn, handler)),
        )
        result.output = _encode_output(client, fn, value)
        returned = True
    except (ResponseInterrupt, SkipInterrupt, PlannedInterrupt):
        pass
    except Exception as exc:
        result.error = exc
    if core.boundary_due() and hooks.boundary_hooks:
        yield from _boundary(hooks)
    if HOOKS.AFTER_EXECUTION in table:
        yield from hooks.call(HOOKS.AFTER_EXECUTION)
    out = _settle(core, result)
    if len(out.ops) <= 1 and HOOKS.TRANSFORM_OUTPUT in table and not core.output_transformed:
        yield from hooks.call(HOOKS.TRANSFORM_OUTPUT, result)
    out = _apply_output(result, out)
    if returned and out.error is None:
        if HOOKS.ON_RUN_COMPLETE in table:
            yield from hooks.observe(HOOKS.ON_RUN_COMPLETE, ctx, out.output)
    elif out.error is not None and not out.ops:
        out.final_attempt = is_final(out.error, call.attempt, call.max_attempts)
        if HOOKS.ON_RUN_ERROR in table:
            yield from hooks.observe(HOOKS.ON_RUN_ERROR, ctx, out.error, out.final_attempt)
    if HOOKS.BEFORE_RESPONSE in table:
        yield from hooks.call(HOOKS.BEFORE_RESPONSE)
    return out
