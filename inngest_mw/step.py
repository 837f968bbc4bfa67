"""Step tools: ``Step`` (async) and ``StepSync`` are thin faces over ``memo.StepCore``.

Everything but awaiting lives in ``_StepBase``: building step info and opcodes, decoding memos,
classifying step errors. Each face runs the same sequence per step: transform_step_input ->
wrap_step( memo | skip | plan/report | on_step_start -> wrap_step_handler -> on_step_* ).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as _dt
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast, overload

from inngest_mw import serializer as _ser
from inngest_mw.durations import DurationLike, format_duration, to_timedelta
from inngest_mw.errors import NonRetriableError, RetryAfterError, StepError
from inngest_mw.event import Event
from inngest_mw.memo import (
    Decision,
    Memo,
    Op,
    Opcode,
    PlannedInterrupt,
    ResponseInterrupt,
    SkipInterrupt,
    StepCore,
    serialize_error,
)
from inngest_mw.pipeline import HookTable, StepInfo

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.function import Function

__all__ = ["Group", "GroupSync", "Step", "StepSync"]

T = TypeVar("T")
_NONE = object()


class _Call:
    """Per-step-call state: whether a new attempt executed, and what it produced."""

    __slots__ = ("executed", "output")

    def __init__(self) -> None:
        self.executed = False
        self.output: Any = None


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

    def _make_info(
        self,
        kind: str,
        step_id: str,
        hashed: str,
        index: int,
        options: dict[str, Any] | None,
        args: Sequence[Any],
        memoized: bool,
    ) -> StepInfo:
        """Built only when a hook or a new step needs it: replayed steps skip it."""
        return StepInfo(
            step_id, hashed, kind, index, step_id, options or {}, list(args), self.attempt, memoized
        )

    def _op(self, info: StepInfo, op: str, name: str, opts: dict[str, Any] | None) -> Op:
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
        """The opcode a non-run step reports when reached for the first time."""
        opts = info.options
        if info.kind == "sleep":
            return self._op(info, Opcode.SLEEP, opts["duration"], None)
        if info.kind == "wait_for_event":
            return self._op(info, Opcode.WAIT_FOR_EVENT, opts["event"], opts)
        if info.kind == "invoke":
            return self._op(info, Opcode.INVOKE, info.id, opts)
        raise AssertionError(f"unknown step kind {info.kind}")

    def _announce(self, info: StepInfo, decision: Decision) -> Op:
        """How a new step that does not run now is reported: its own op, or ``StepPlanned``."""
        if decision is Decision.REPORT:
            return self._report_op(info)
        return self._op(info, Opcode.STEP_PLANNED, info.id, None)

    def _plan_or_report(self, info: StepInfo, decision: Decision) -> BaseException:
        if decision is Decision.SKIP:
            return SkipInterrupt()
        self._core.add(self._announce(info, decision))
        return self._core.interrupt_for_new_step()

    def _memo_value(self, kind: str, memo: Memo, output_type: object) -> Any:
        if memo.error is not None:
            err = memo.error
            raise StepError(
                str(err.get("message", "")), str(err.get("name", "Error")), err.get("stack")
            )
        data = memo.data
        if kind == "wait_for_event":
            return None if data is None else Event.model_validate(data)
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
            )
        op = self._op(info, Opcode.STEP_RUN, info.id, None)
        op.data = data
        self._core.add(op)
        return ResponseInterrupt()

    def _fail_new(self, info: StepInfo, exc: Exception) -> ResponseInterrupt:
        final = self._error_is_final(exc)
        op = self._op(info, Opcode.STEP_FAILED if final else Opcode.STEP_ERROR, info.id, None)
        op.error = serialize_error(exc)
        op.exception = exc
        self._core.add(op)
        if isinstance(exc, RetryAfterError):
            self._core.retry_after = exc.header_value()
        return ResponseInterrupt()

    def _is_final_attempt(self) -> bool:
        return self._max_attempts is not None and self.attempt + 1 >= self._max_attempts

    def _error_is_final(self, exc: BaseException) -> bool:
        return isinstance(exc, NonRetriableError) or self._is_final_attempt()

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
    def _wait_options(event: str, if_exp: str | None, timeout: DurationLike) -> dict[str, Any]:
        opts: dict[str, Any] = {"event": event, "timeout": format_duration(to_timedelta(timeout))}
        if if_exp is not None:
            opts["if"] = if_exp
        return opts

    @staticmethod
    def _invoke_options(
        function_id: str,
        data: Mapping[str, Any] | None,
        timeout: DurationLike | None,
        v: str | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"data": dict(data or {})}
        if v is not None:
            payload["v"] = v
        opts: dict[str, Any] = {"function_id": function_id, "payload": payload}
        if timeout is not None:
            opts["timeout"] = format_duration(to_timedelta(timeout))
        return opts

    def _invoke_target(
        self, function: Function[Any] | None, function_id: str | None, app_id: str | None
    ) -> tuple[str, object]:
        if function is not None:
            return function.id, function.output_type
        if not function_id:
            raise ValueError("invoke needs a function or a function_id")
        app = app_id or self._client.app_id
        return (function_id if function_id.startswith(f"{app}-") else f"{app}-{function_id}"), None

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
        return await self._step("run", step_id, None, args, handler, output_type)

    async def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """Send events from a step (sent once, memoized), returning their IDs."""
        batch = [events] if isinstance(events, Event) else list(events)

        async def send(batch: list[Event]) -> list[str]:
            return await self._client._send_with(batch, self._hooks)

        return cast(list[str], await self._step("send_event", step_id, None, (batch,), send, None))

    async def sleep(self, step_id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` (timedelta, "1h30m", or milliseconds)."""
        await self._step("sleep", step_id, self._sleep_options(duration), (), None, None)

    async def sleep_until(self, step_id: str, until: _dt.datetime | str) -> None:
        """Pause the run until ``until`` (naive datetimes are UTC)."""
        opts = self._sleep_until_options(until)
        await self._step("sleep", step_id, opts, (), None, None)

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: DurationLike,
        if_exp: str | None = None,
    ) -> Event | None:
        """Wait for an event named ``event`` matching ``if_exp``; ``None`` after ``timeout``."""
        opts = self._wait_options(event, if_exp, timeout)
        return cast(Event | None, await self._step("wait_for_event", step_id, opts, (), None, None))

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Mapping[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> T:
        """Run another function and wait for its result (its error raises ``StepError``)."""
        target, output_type = self._invoke_target(function, None, None)
        opts = self._invoke_options(target, data, timeout, v)
        return cast(T, await self._step("invoke", step_id, opts, (), None, output_type))

    async def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> Any:
        """``invoke`` by ID (``app_id`` defaults to this client's app)."""
        target, _ = self._invoke_target(None, function_id, app_id)
        opts = self._invoke_options(target, data, timeout, v)
        return await self._step("invoke", step_id, opts, (), None, None)

    async def _step(
        self,
        kind: str,
        step_id: str,
        options: dict[str, Any] | None,
        args: Sequence[Any],
        handler: Callable[..., Any] | None,
        output_type: object,
    ) -> Any:
        self._check_not_nested()
        core, hooks = self._core, self._hooks
        hashed, index = self._resolve(step_id)
        memo = core.take(hashed)
        if memo is not None and not hooks.step_hooks:
            if core.memos_exhausted() and core.boundary_due():
                await _boundary(hooks)
            return self._memo_value(kind, memo, output_type)
        info = self._make_info(kind, step_id, hashed, index, options, args, memo is not None)
        if hooks.has("transform_step_input"):
            await hooks.acall("transform_step_input", info)
        call = _Call()
        # Taken here, in the caller's task: wrap hooks may run the rest in another task.
        branch = asyncio.current_task() is not core.main_task and not core.parallel_depth

        async def inner() -> Any:
            if memo is not None:
                if core.memos_exhausted() and core.boundary_due():
                    await _boundary(hooks)
                return self._memo_value(info.kind, memo, output_type)
            if core.boundary_due():
                await _boundary(hooks)
            decision = core.decide(info.hashed_id, info.kind, info.id)
            if branch:
                decision = await self._gathered(info, decision)
            if decision is not Decision.EXECUTE or handler is None:
                raise self._plan_or_report(info, decision)
            await hooks.aobserve("on_step_start", info)
            call.executed = True

            async def run_handler() -> Any:
                token = _in_handler.set(True)
                try:
                    result = handler(*info.input)
                    if inspect.isawaitable(result):
                        result = await result
                    return result
                finally:
                    _in_handler.reset(token)

            try:
                out = await hooks.awrap("wrap_step_handler", run_handler, info)
            except Exception as exc:
                await hooks.aobserve("on_step_error", info, exc, self._error_is_final(exc))
                raise
            call.output = out
            await hooks.aobserve("on_step_complete", info, out)
            return out

        try:
            value = await hooks.awrap("wrap_step", inner, info)
        except Exception as exc:
            if call.executed:
                raise self._fail_new(info, exc) from None
            raise
        if call.executed:
            raise self._finish_new(info, call)
        return value

    async def _gathered(self, info: StepInfo, decision: Decision) -> Decision:
        """A new step reached in a task other than the handler's (``asyncio.gather`` of steps).

        Sibling tasks get a few loop turns to reach their steps too; then the first one speaks
        for all of them: it runs its step alone, or plans every step found together (as
        ``group.parallel`` does). The others, and non-targeted steps, park until the request ends.
        """
        core = self._core
        core.parked.append(asyncio.current_task())
        if decision is Decision.SKIP:
            await _park()
        if core.target is not None:
            return decision
        core.gathered.append((info, decision))
        for _ in range(_GATHER_TURNS):
            await asyncio.sleep(0)
        if core.gathered[0][0] is not info:
            await _park()
        if len(core.gathered) == 1:
            return decision
        for other, other_decision in core.gathered:
            core.add(self._announce(other, other_decision))
        raise ResponseInterrupt()


_GATHER_TURNS = 3
_in_handler: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "inngest_mw_in_step", default=False
)


async def _park() -> NoReturn:
    """Wait until the request ends (the handler's task cancels the branches)."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a parked step branch was resumed")


async def release_parked(core: StepCore) -> None:
    """Cancel and collect the ``asyncio.gather`` branches still waiting when a request ends."""
    branches, core.parked = core.parked, []
    current = asyncio.current_task()
    pending = [task for task in branches if task is not current and not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class StepSync(_StepBase):
    """Sync step tools (``ctx.step`` in a sync function)."""

    __slots__ = ()

    def run(
        self, step_id: str, handler: Callable[..., T], *args: Any, output_type: object = None
    ) -> T:
        """Run ``handler(*args)`` once per run and memoize its JSON-serializable result."""
        if inspect.iscoroutinefunction(handler):
            raise TypeError(f"step {step_id!r}: a sync function cannot run an async step handler")
        return cast(T, self._step("run", step_id, None, args, handler, output_type))

    def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """Send events from a step (sent once, memoized), returning their IDs."""
        batch = [events] if isinstance(events, Event) else list(events)

        def send(batch: list[Event]) -> list[str]:
            return self._client._send_with_sync(batch, self._hooks)

        return cast(list[str], self._step("send_event", step_id, None, (batch,), send, None))

    def sleep(self, step_id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` (timedelta, "1h30m", or milliseconds)."""
        self._step("sleep", step_id, self._sleep_options(duration), (), None, None)

    def sleep_until(self, step_id: str, until: _dt.datetime | str) -> None:
        """Pause the run until ``until`` (naive datetimes are UTC)."""
        self._step("sleep", step_id, self._sleep_until_options(until), (), None, None)

    def wait_for_event(
        self, step_id: str, *, event: str, timeout: DurationLike, if_exp: str | None = None
    ) -> Event | None:
        """Wait for an event named ``event`` matching ``if_exp``; ``None`` after ``timeout``."""
        opts = self._wait_options(event, if_exp, timeout)
        return cast(Event | None, self._step("wait_for_event", step_id, opts, (), None, None))

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Mapping[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> T:
        """Run another function and wait for its result (its error raises ``StepError``)."""
        target, output_type = self._invoke_target(function, None, None)
        opts = self._invoke_options(target, data, timeout, v)
        return cast(T, self._step("invoke", step_id, opts, (), None, output_type))

    def invoke_by_id(
        self,
        step_id: str,
        *,
        function_id: str,
        app_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> Any:
        """``invoke`` by ID (``app_id`` defaults to this client's app)."""
        target, _ = self._invoke_target(None, function_id, app_id)
        opts = self._invoke_options(target, data, timeout, v)
        return self._step("invoke", step_id, opts, (), None, None)

    def _step(
        self,
        kind: str,
        step_id: str,
        options: dict[str, Any] | None,
        args: Sequence[Any],
        handler: Callable[..., Any] | None,
        output_type: object,
    ) -> Any:
        self._check_not_nested()
        core, hooks = self._core, self._hooks
        hashed, index = self._resolve(step_id)
        memo = core.take(hashed)
        if memo is not None and not hooks.step_hooks:
            if core.memos_exhausted() and core.boundary_due():
                _boundary_sync(hooks)
            return self._memo_value(kind, memo, output_type)
        info = self._make_info(kind, step_id, hashed, index, options, args, memo is not None)
        if hooks.has("transform_step_input"):
            hooks.call("transform_step_input", info)
        call = _Call()

        def inner() -> Any:
            if memo is not None:
                if core.memos_exhausted() and core.boundary_due():
                    _boundary_sync(hooks)
                return self._memo_value(info.kind, memo, output_type)
            if core.boundary_due():
                _boundary_sync(hooks)
            decision = core.decide(info.hashed_id, info.kind, info.id)
            if decision is not Decision.EXECUTE or handler is None:
                raise self._plan_or_report(info, decision)
            hooks.observe("on_step_start", info)
            call.executed = True

            def run_handler() -> Any:
                token = _in_handler.set(True)
                try:
                    return handler(*info.input)
                finally:
                    _in_handler.reset(token)

            try:
                out = hooks.wrap("wrap_step_handler", run_handler, info)
            except Exception as exc:
                hooks.observe("on_step_error", info, exc, self._error_is_final(exc))
                raise
            call.output = out
            hooks.observe("on_step_complete", info, out)
            return out

        try:
            value = hooks.wrap("wrap_step", inner, info)
        except Exception as exc:
            if call.executed:
                raise self._fail_new(info, exc) from None
            raise
        if call.executed:
            raise self._finish_new(info, call)
        return value


async def _boundary(hooks: HookTable) -> None:
    await hooks.acall("after_memoization")
    await hooks.acall("before_execution")


def _boundary_sync(hooks: HookTable) -> None:
    hooks.call("after_memoization")
    hooks.call("before_execution")


class _GroupBase:
    __slots__ = ("_core",)

    def __init__(self, core: StepCore) -> None:
        self._core = core

    def _settle(self, pending: bool) -> None:
        """After all branches ran: respond with the collected ops, or keep skipping upwards."""
        core = self._core
        core.parallel_depth -= 1
        if not pending:
            return
        if core.ops:
            raise PlannedInterrupt() if core.parallel_depth else ResponseInterrupt()
        raise SkipInterrupt()


class Group(_GroupBase):
    """``ctx.group.parallel((lambda: ctx.step.run("a", ...), ...))``: steps planned together."""

    __slots__ = ()

    async def parallel(self, callables: Sequence[Callable[[], Awaitable[T]]]) -> tuple[T, ...]:
        results: list[T] = []
        pending = False
        self._core.parallel_depth += 1
        try:
            for branch in callables:
                try:
                    results.append(await branch())
                except (PlannedInterrupt, SkipInterrupt):
                    pending = True
        except BaseException:
            self._core.parallel_depth -= 1
            raise
        self._settle(pending)
        return tuple(results)


class GroupSync(_GroupBase):
    """Sync ``ctx.group.parallel``."""

    __slots__ = ()

    def parallel(self, callables: Sequence[Callable[[], T]]) -> tuple[T, ...]:
        results: list[T] = []
        pending = False
        self._core.parallel_depth += 1
        try:
            for branch in callables:
                try:
                    results.append(branch())
                except (PlannedInterrupt, SkipInterrupt):
                    pending = True
        except BaseException:
            self._core.parallel_depth -= 1
            raise
        self._settle(pending)
        return tuple(results)
