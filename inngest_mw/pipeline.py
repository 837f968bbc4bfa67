"""The hook pipeline: middleware base classes and the compiled, per-request dispatch of their hooks.

Ordering (DESIGN.md §2): built-in, then client, then function middleware, in list order.
Before/transform hooks run forward, after hooks in reverse, wrap hooks nest with the first
registered outermost. Which hooks a middleware class overrides, and whether they are coroutines, is
decided once per class; hooks left at the base no-op are never called.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias, TypeVar, cast

from inngest_mw import _bridge
from inngest_mw.errors import (
    ConfigError,
    MiddlewareError,
    NonRetriableError,
    RetryAfterError,
    StepError,
)

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.context import Context, ContextSync
    from inngest_mw.event import Event, SendEventsResult
    from inngest_mw.function import Function
    from inngest_mw.handler import CommRequest, CommResponse
    from inngest_mw.memo import StepMemos

__all__ = [
    "HookTable",
    "Middleware",
    "MiddlewareFactory",
    "MiddlewareSync",
    "PipelineSpec",
    "StepInfo",
    "TransformOutputResult",
]

T = TypeVar("T")
_log = logging.getLogger("inngest_mw")


@dataclass(slots=True)
class StepInfo:
    """What step hooks are told about one step call. ``options``/``input`` may be changed by
    ``transform_step_input``; ``memoized`` says whether the value comes from earlier requests."""

    id: str
    hashed_id: str
    kind: str
    index: int
    display_name: str
    options: dict[str, Any] = field(default_factory=dict)
    input: list[Any] = field(default_factory=list)
    attempt: int = 0
    memoized: bool = False


@dataclass(slots=True)
class OutputStep:
    """The step a response reports, as ``transform_output`` sees it (``opts`` reaches the wire)."""

    id: str
    hashed_id: str
    op: str
    opts: dict[str, Any] | None


class _Empty:
    def __repr__(self) -> str:
        return "<no output>"


EMPTY: Final = _Empty()


@dataclass(slots=True)
class TransformOutputResult:
    """The request's outcome: ``output`` (a return value or a new step's data) or ``error``.

    Middleware may replace either; ``step`` is the step that ran or was planned, if exactly one.
    """

    output: Any = EMPTY
    error: BaseException | None = None
    step: OutputStep | None = None

    def has_output(self) -> bool:
        return self.output is not EMPTY


class _MiddlewareBase:
    """State shared by both colours: a fresh instance per request, given the client and raw request."""

    name: ClassVar[str | None] = None

    def __init__(self, client: Inngest, raw_request: object) -> None:
        self.client = client
        self.raw_request = raw_request

    @classmethod
    def factory(cls, *args: Any, **kwargs: Any) -> MiddlewareFactory:
        """A factory binding extra constructor arguments: ``MyMiddleware.factory(key="...")``."""

        def make(client: Inngest, raw_request: object) -> _MiddlewareBase:
            return cls(client, raw_request, *args, **kwargs)

        make.__qualname__ = f"{cls.__qualname__}.factory"
        return make


class Middleware(_MiddlewareBase):
    """Async middleware: override any hook below. Unoverridden hooks cost nothing."""

    async def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        """Change the context (e.g. ``ctx.set(KEY, value)``) or memoized step data before the run."""

    async def after_memoization(self) -> None:
        """Memoized state is exhausted (or a new step appeared first); once per request."""

    async def before_execution(self) -> None:
        """Right before the first code that has not run before; once per request."""

    async def after_execution(self) -> None:
        """The handler stopped: returned, raised, or reached a step to report."""

    async def transform_output(self, result: TransformOutputResult) -> None:
        """Replace ``result.output`` or ``result.error`` before the response is built."""

    async def before_response(self) -> None:
        """Last hook before the response is sent."""

    async def on_run_start(self, ctx: Context | ContextSync) -> None:
        """First request of a run (attempt 0, nothing memoized)."""

    async def on_run_complete(self, ctx: Context | ContextSync, output: Any) -> None:
        """The function returned ``output``."""

    async def on_run_error(
        self, ctx: Context | ContextSync, error: BaseException, is_final_attempt: bool
    ) -> None:
        """The function raised (each attempt); ``is_final_attempt`` when no retry follows."""

    async def transform_step_input(self, info: StepInfo) -> None:
        """Change ``info.options``/``info.input`` before the step is looked up or run."""

    async def on_step_start(self, info: StepInfo) -> None:
        """A new ``run``/``send_event`` attempt is about to execute."""

    async def on_step_complete(self, info: StepInfo, output: Any) -> None:
        """The attempt returned ``output``."""

    async def on_step_error(
        self, info: StepInfo, error: BaseException, is_final_attempt: bool
    ) -> None:
        """The attempt raised."""

    async def wrap_request(
        self, call_next: Callable[[], Awaitable[CommResponse]], request: CommRequest
    ) -> CommResponse:
        """Around a whole call request; always returns the response."""
        return await call_next()

    async def wrap_function(
        self, call_next: Callable[[], Awaitable[Any]], ctx: Context | ContextSync
    ) -> Any:
        """Around the user handler; ``call_next`` returns only when the function completes."""
        return await call_next()

    async def wrap_step(self, call_next: Callable[[], Awaitable[Any]], info: StepInfo) -> Any:
        """Around every step call, memoized or new; the return value is what user code gets."""
        return await call_next()

    async def wrap_step_handler(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        """Around a new ``run``/``send_event`` attempt; the return value is what the server stores."""
        return await call_next()

    async def wrap_send(
        self, call_next: Callable[[], Awaitable[list[str]]], events: list[Event]
    ) -> list[str]:
        """Around the HTTP call that sends events; returns the event IDs."""
        return await call_next()

    async def before_send_events(self, events: list[Event]) -> list[Event] | None:
        """Change the events (in place, or return a new list) before they are sent."""
        return None

    async def after_send_events(self, result: SendEventsResult) -> None:
        """The send finished (``result.error`` set when it failed)."""


class MiddlewareSync(_MiddlewareBase):
    """Sync middleware: the same hooks as plain functions; usable by sync and async functions."""

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        """See ``Middleware.transform_input``."""

    def after_memoization(self) -> None:
        """See ``Middleware.after_memoization``."""

    def before_execution(self) -> None:
        """See ``Middleware.before_execution``."""

    def after_execution(self) -> None:
        """See ``Middleware.after_execution``."""

    def transform_output(self, result: TransformOutputResult) -> None:
        """See ``Middleware.transform_output``."""

    def before_response(self) -> None:
        """See ``Middleware.before_response``."""

    def on_run_start(self, ctx: Context | ContextSync) -> None:
        """See ``Middleware.on_run_start``."""

    def on_run_complete(self, ctx: Context | ContextSync, output: Any) -> None:
        """See ``Middleware.on_run_complete``."""

    def on_run_error(
        self, ctx: Context | ContextSync, error: BaseException, is_final_attempt: bool
    ) -> None:
        """See ``Middleware.on_run_error``."""

    def transform_step_input(self, info: StepInfo) -> None:
        """See ``Middleware.transform_step_input``."""

    def on_step_start(self, info: StepInfo) -> None:
        """See ``Middleware.on_step_start``."""

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        """See ``Middleware.on_step_complete``."""

    def on_step_error(self, info: StepInfo, error: BaseException, is_final_attempt: bool) -> None:
        """See ``Middleware.on_step_error``."""

    def wrap_request(
        self, call_next: Callable[[], CommResponse], request: CommRequest
    ) -> CommResponse:
        """See ``Middleware.wrap_request``."""
        return call_next()

    def wrap_function(self, call_next: Callable[[], Any], ctx: Context | ContextSync) -> Any:
        """See ``Middleware.wrap_function``."""
        return call_next()

    def wrap_step(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        """See ``Middleware.wrap_step``."""
        return call_next()

    def wrap_step_handler(self, call_next: Callable[[], Any], info: StepInfo) -> Any:
        """See ``Middleware.wrap_step_handler``."""
        return call_next()

    def wrap_send(self, call_next: Callable[[], list[str]], events: list[Event]) -> list[str]:
        """See ``Middleware.wrap_send``."""
        return call_next()

    def before_send_events(self, events: list[Event]) -> list[Event] | None:
        """See ``Middleware.before_send_events``."""
        return None

    def after_send_events(self, result: SendEventsResult) -> None:
        """See ``Middleware.after_send_events``."""


MiddlewareFactory: TypeAlias = Callable[["Inngest", object], _MiddlewareBase]
"""A middleware class or any callable ``(client, raw_request) -> instance``."""

FORWARD_HOOKS: Final = (
    "transform_input",
    "before_execution",
    "before_response",
    "transform_step_input",
    "before_send_events",
)
REVERSED_HOOKS: Final = (
    "after_memoization",
    "after_execution",
    "transform_output",
    "after_send_events",
)
OBSERVER_HOOKS: Final = (
    "on_run_start",
    "on_run_complete",
    "on_run_error",
    "on_step_start",
    "on_step_complete",
    "on_step_error",
)
WRAP_HOOKS: Final = ("wrap_request", "wrap_function", "wrap_step", "wrap_step_handler", "wrap_send")
ALL_HOOKS: Final = FORWARD_HOOKS + REVERSED_HOOKS + OBSERVER_HOOKS + WRAP_HOOKS
_PASS_THROUGH = (NonRetriableError, RetryAfterError, StepError, MiddlewareError)


@functools.cache
def _overrides(cls: type[object]) -> tuple[tuple[str, bool], ...]:
    """The hooks ``cls`` overrides, each with whether it is a coroutine function."""
    base: type = Middleware if issubclass(cls, Middleware) else MiddlewareSync
    found = []
    for hook in ALL_HOOKS:
        impl = getattr(cls, hook, None)
        if impl is not None and impl is not getattr(base, hook):
            found.append((hook, inspect.iscoroutinefunction(impl)))
    return tuple(found)


@functools.cache
def _async_twins(cls: type[object]) -> frozenset[str]:
    """Wrap hooks of a ``MiddlewareSync`` class that also have an ``async def <hook>_async`` twin."""
    if not issubclass(cls, MiddlewareSync):
        return frozenset()
    return frozenset(
        hook
        for hook in WRAP_HOOKS
        if inspect.iscoroutinefunction(getattr(cls, hook + "_async", None))
    )


@functools.cache
def _plan(cls: type[object], async_path: bool) -> tuple[tuple[str, str, bool, str], ...]:
    """Per class and path colour: (hook, attribute to bind, is async, label), worked out once."""
    label = getattr(cls, "name", None) or cls.__name__
    twins = _async_twins(cls) if async_path else frozenset()  # type: ignore[arg-type]
    return tuple(
        (hook, hook + "_async", True, label) if hook in twins else (hook, hook, is_async, label)
        for hook, is_async in _overrides(cls)  # type: ignore[arg-type]
    )


Hook: TypeAlias = tuple[Callable[..., Any], bool, str]
"""A bound hook, whether it is async, and its label for error messages."""


class HookTable:
    """One request's middleware instances and, per hook name, the bound hooks to call in order.

    ``async_path`` says which colour of code drives this request. On the async path a
    ``MiddlewareSync`` wrap hook with an ``async def <hook>_async`` twin uses the twin, so a
    middleware meant for both colours crosses no thread boundary.
    """

    __slots__ = ("hooks", "instances", "step_hooks")

    def __init__(self, instances: list[_MiddlewareBase], *, async_path: bool = True) -> None:
        self.instances = instances
        hooks: dict[str, list[Hook]] = {}
        for instance in instances:
            plan = _plan(type(instance), async_path)  # type: ignore[arg-type]
            for hook, attribute, is_async, label in plan:
                bound = (getattr(instance, attribute), is_async, label)
                if hook in hooks:
                    hooks[hook].append(bound)
                else:
                    hooks[hook] = [bound]
        for hook in REVERSED_HOOKS:
            if hook in hooks:
                hooks[hook].reverse()
        self.hooks = hooks
        self.step_hooks = "transform_step_input" in hooks or "wrap_step" in hooks
        """Whether a memoized step needs the hook path at all (else it is a plain memo lookup)."""

    def has(self, hook: str) -> bool:
        return hook in self.hooks

    # -- async driver -----------------------------------------------------------------------

    async def acall(self, hook: str, *args: Any) -> Any:
        """Run a forward/reversed hook chain; the last non-None return value is returned."""
        result = None
        for fn, is_async, label in self.hooks.get(hook, ()):
            try:
                value = fn(*args)
                if is_async:
                    value = await value
            except _PASS_THROUGH:
                raise
            except Exception as exc:
                raise _hook_error(label, hook, exc) from exc
            if value is not None:
                result = value
        return result

    async def aobserve(self, hook: str, *args: Any) -> None:
        for fn, is_async, label in self.hooks.get(hook, ()):
            try:
                value = fn(*args)
                if is_async:
                    await value
            except Exception:
                _log.exception("inngest-mw: middleware %s.%s raised; ignored", label, hook)

    async def awrap(self, hook: str, innermost: Callable[[], Awaitable[T]], arg: Any) -> T:
        """Run ``innermost`` inside the onion of ``hook`` (first registered outermost)."""
        hooks = self.hooks.get(hook)
        if hooks is None:
            return await innermost()
        return await _arun(hooks, 0, hook, innermost, arg)

    # -- sync driver ------------------------------------------------------------------------

    def call(self, hook: str, *args: Any) -> Any:
        result = None
        for fn, is_async, label in self.hooks.get(hook, ()):
            try:
                value = _bridge.run_coroutine(fn(*args)) if is_async else fn(*args)
            except _PASS_THROUGH:
                raise
            except Exception as exc:
                raise _hook_error(label, hook, exc) from exc
            if value is not None:
                result = value
        return result

    def observe(self, hook: str, *args: Any) -> None:
        for fn, is_async, label in self.hooks.get(hook, ()):
            try:
                if is_async:
                    _bridge.run_coroutine(fn(*args))
                else:
                    fn(*args)
            except Exception:
                _log.exception("inngest-mw: middleware %s.%s raised; ignored", label, hook)

    def wrap(self, hook: str, innermost: Callable[[], T], arg: Any) -> T:
        """Sync ``awrap``."""
        hooks = self.hooks.get(hook)
        if hooks is None:
            return innermost()
        return _srun(hooks, 0, hook, innermost, arg)


def _hook_error(label: str, hook: str, exc: Exception) -> MiddlewareError:
    return MiddlewareError(f"middleware {label}.{hook} raised {type(exc).__name__}: {exc}")


_INNER = "_inngest_mw_inner"


def _mark_inner(exc: BaseException) -> None:
    """Tag an exception raised inside the onion, so layers it passes through let it go."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _INNER, True)


def _own_error(exc: Exception) -> bool:
    """Whether a wrap hook raised ``exc`` itself rather than passing (or converting) an inner one.

    A tag is used rather than remembering the inner exception in the layer: a reference from the
    layer to the exception would make a cycle through its traceback on every request.
    """
    if isinstance(exc, _PASS_THROUGH) or getattr(exc, _INNER, False):
        return False
    cause = exc.__cause__ or exc.__context__
    return cause is None or not getattr(cause, _INNER, False)


def _segment_end(hooks: list[Hook], start: int, is_async: bool) -> int:
    end = start
    while end < len(hooks) and hooks[end][1] is is_async:
        end += 1
    return end


async def _arun(
    hooks: list[Hook], i: int, hook: str, innermost: Callable[[], Awaitable[T]], arg: Any
) -> T:
    """Layer ``i`` of an onion on the async path.

    A run of sync hooks executes in one worker thread (their ``call_next`` comes back to this loop
    for the layers inside), so a stack of sync middleware costs one thread hop, not one per layer.
    """
    if i == len(hooks):
        try:
            return await innermost()
        except BaseException as exc:
            _mark_inner(exc)
            raise
    fn, is_async, label = hooks[i]
    if not is_async:
        end = _segment_end(hooks, i, False)
        rest = functools.partial(_arun, hooks, end, hook, innermost, arg)

        def inner_sync() -> T:
            return _bridge.run_coroutine(rest())

        result: T = await _bridge.run_in_thread(_srun, hooks[i:end], 0, hook, inner_sync, arg)
        return result
    try:
        value: T = await fn(functools.partial(_arun, hooks, i + 1, hook, innermost, arg), arg)
        return value
    except Exception as exc:
        if _own_error(exc):
            raise _hook_error(label, hook, exc) from exc
        raise


def _srun(hooks: list[Hook], i: int, hook: str, innermost: Callable[[], T], arg: Any) -> T:
    """Layer ``i`` of an onion on the sync path; a run of async hooks goes to the event loop."""
    if i == len(hooks):
        try:
            return innermost()
        except BaseException as exc:
            _mark_inner(exc)
            raise
    fn, is_async, label = hooks[i]
    if is_async:
        end = _segment_end(hooks, i, True)
        rest = functools.partial(_srun, hooks, end, hook, innermost, arg)

        async def inner_async() -> T:
            return await _bridge.run_in_thread(rest)

        return _bridge.run_coroutine(_arun(hooks[i:end], 0, hook, inner_async, arg))
    try:
        value: T = fn(functools.partial(_srun, hooks, i + 1, hook, innermost, arg), arg)
        return value
    except Exception as exc:
        if _own_error(exc):
            raise _hook_error(label, hook, exc) from exc
        raise


class PipelineSpec:
    """The ordered middleware factories of a client or function, checked once at definition."""

    __slots__ = ("factories",)

    def __init__(self, factories: Sequence[object] = ()) -> None:
        checked: list[MiddlewareFactory] = []
        for factory in factories:
            if isinstance(factory, _MiddlewareBase):
                cls = type(factory).__name__
                raise ConfigError(
                    f"middleware: got an instance of {cls}; pass the class {cls} itself "
                    f"(or {cls}.factory(...)) so a fresh instance is made per request"
                )
            if not callable(factory):
                raise ConfigError(f"middleware: {factory!r} is not a middleware class or factory")
            checked.append(cast(MiddlewareFactory, factory))
        self.factories = tuple(checked)

    def __add__(self, other: PipelineSpec) -> PipelineSpec:
        return PipelineSpec(self.factories + other.factories)

    def __bool__(self) -> bool:
        return bool(self.factories)

    def build(self, client: Inngest, raw_request: object, *, async_path: bool = True) -> HookTable:
        """Fresh instances for one request; classes that override no hook are not even made."""
        instances = []
        for factory in self.factories:
            if isinstance(factory, type) and not _overrides(factory):
                continue
            instance = factory(client, raw_request)
            if not isinstance(instance, _MiddlewareBase):
                raise ConfigError(
                    f"middleware factory {factory!r} returned {type(instance).__name__}, "
                    "not a Middleware or MiddlewareSync instance"
                )
            instances.append(instance)
        return HookTable(instances, async_path=async_path)
