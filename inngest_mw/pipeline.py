"""The hook pipeline: middleware base classes and the compiled, per-request dispatch of their hooks.

Ordering (docs/ARCHITECTURE.md): built-in, then client, then function middleware, in list order.
Before/transform hooks run forward, after hooks in reverse, wrap hooks nest with the first
registered outermost. Which hooks a middleware class overrides, and whether they are coroutines, is
decided once per class; hooks left at the base no-op are never called. The hooks are declared in
``hooks.py``; the chains and onions here are flows (``_drive``), one piece of code for both colours.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    ParamSpec,
    TypeAlias,
    TypeVar,
    cast,
)

from inngest_mw import _bridge, _source
from inngest_mw._drive import Await, Done, Effect, Flow, OnPath, Resume, done
from inngest_mw.errors import (
    ConfigError,
    MiddlewareError,
    NonRetriableError,
    RetryAfterError,
    StepError,
)
from inngest_mw.hooks import ALL_HOOKS, HOOKS, TWIN_SUFFIX, HookKind, HookSpec, check_hook_names
from inngest_mw.stepkind import StepKind

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.context import Context, ContextSync
    from inngest_mw.event import Event, SendEventsResult
    from inngest_mw.function import Function
    from inngest_mw.handler import CommRequest, CommResponse
    from inngest_mw.hooktrace import HookTrace
    from inngest_mw.memo import StepMemos

__all__ = [
    "ALL_HOOKS",
    "HookTable",
    "Middleware",
    "MiddlewareFactory",
    "MiddlewareSync",
    "PipelineSpec",
    "StepInfo",
    "TransformOutputResult",
]

T = TypeVar("T")
A = TypeVar("A")
P = ParamSpec("P")
R = TypeVar("R")
_log = logging.getLogger("inngest_mw")


@dataclass(slots=True)
class StepInfo:
    """What step hooks are told about one step call. ``options``/``input`` may be changed by
    ``transform_step_input``; ``memoized`` says whether the value comes from earlier requests."""

    id: str
    hashed_id: str
    kind: StepKind
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        methods = [name for name, value in vars(cls).items() if callable(value)]
        check_hook_names(cls, methods, twins=not _is_async_base(cls))

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


def _is_async_base(cls: type) -> bool:
    return any(
        base.__name__ == "Middleware" and base.__module__ == __name__ for base in cls.__mro__
    )


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
    """Sync middleware: the same hooks as plain functions; usable by sync and async functions.

    On an async function its hooks run on the event loop's thread (wrap hooks in a greenlet, see
    ``_bridge``), so they must not block. Set ``blocking = True`` on a middleware whose hooks do
    blocking work (network calls, file I/O, sleeps): on an async function each of its hooks then
    runs in a worker thread instead, at the cost of a thread hop per call.
    """

    blocking: ClassVar[bool] = False

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

_PASS_THROUGH = (NonRetriableError, RetryAfterError, StepError, MiddlewareError)


@functools.cache
def _overrides(cls: type[object]) -> tuple[tuple[HookSpec[..., Any], bool], ...]:
    """The hooks ``cls`` overrides with code that does something, each with whether it is a
    coroutine function. An override whose body does nothing (``_source.does_nothing``) costs
    nothing, as a hook left at the base class does."""
    base: type = Middleware if issubclass(cls, Middleware) else MiddlewareSync
    found = []
    for spec in HOOKS.ALL:
        impl = getattr(cls, spec.name, None)
        if impl is None or impl is getattr(base, spec.name):
            continue
        twin = getattr(cls, spec.name + TWIN_SUFFIX, None)
        if twin is None and _source.does_nothing(impl, spec.kind is HookKind.WRAP):
            continue
        found.append((spec, inspect.iscoroutinefunction(impl)))
    return tuple(found)


class Call(enum.Enum):
    """How a hook is called on a path, decided once per class (``_plan``)."""

    CALL = "call"
    """A sync hook called directly: on the sync path, or a non-blocking chain hook on the async one."""
    GREENLET = "greenlet"
    """A non-blocking sync wrap hook on the async path: on the loop's thread, in a greenlet."""
    THREAD = "thread"
    """A sync hook of a ``blocking`` middleware on the async path: in a worker thread."""
    START = "start"
    """An async hook on the async path: started here, awaited only if it really waits."""
    EAGER = "eager"
    """An async hook that cannot wait (``_bridge.needs_loop``), on the sync path: run here."""
    LOOP = "loop"
    """An async hook that may wait, on the sync path: run on the event loop."""


_ASYNC_CALLS = frozenset({Call.START, Call.EAGER, Call.LOOP})
# Module-level names for the hot paths: looking a member up on its enum class costs about 100 ns
# in CPython 3.11, a global about 15 ns, and a request makes hundreds of these tests.
_CALL, _THREAD = Call.CALL, Call.THREAD
_START, _EAGER, _LOOP = Call.START, Call.EAGER, Call.LOOP


@functools.cache
def _plan(cls: type[object], async_path: bool) -> tuple[Planned, ...]:
    """Per class and path colour: (hook, bound attribute, how it is called, label), worked out once.

    On the async path a ``MiddlewareSync`` wrap hook with an ``async def <hook>_async`` twin uses
    the twin, so a middleware meant for both colours crosses nothing at all.
    """
    label = getattr(cls, "name", None) or cls.__name__
    blocking = bool(getattr(cls, "blocking", False))
    plan = []
    for spec, is_async in _overrides(cls):  # type: ignore[arg-type]
        attribute = spec.name
        twin = getattr(cls, spec.name + TWIN_SUFFIX, None)
        if async_path and spec.kind is HookKind.WRAP and inspect.iscoroutinefunction(twin):
            attribute, is_async = spec.name + TWIN_SUFFIX, True
        wrap = spec.kind is HookKind.WRAP
        if is_async and async_path:
            how = Call.START
        elif is_async:
            how = Call.LOOP if _source.needs_loop(getattr(cls, attribute), wrap) else Call.EAGER
        elif async_path and blocking:
            how = Call.THREAD
        else:
            how = Call.GREENLET if async_path and wrap else Call.CALL
        plan.append((spec, attribute, how, label))
    return tuple(plan)


Planned: TypeAlias = tuple[HookSpec[..., Any], str, Call, str]
Hook: TypeAlias = tuple[Callable[..., Any], int, Call, str]
"""A hook: its function (called with the middleware instance first), the index of that instance
in the request's list, how it is called, and its label for error messages."""


@dataclass(frozen=True, slots=True)
class _Layout:
    """The hooks of one sequence of middleware classes on one path colour, in calling order."""

    hooks: dict[HookSpec[..., Any], tuple[Hook, ...]]
    attributes: frozenset[str]
    """The attribute names the hooks are looked up by (an instance may shadow one)."""


@functools.lru_cache(maxsize=256)
def _layout(classes: tuple[type, ...], async_path: bool) -> _Layout:
    """Worked out once per sequence of classes: a request then only makes the instances."""
    hooks: dict[HookSpec[..., Any], list[Hook]] = {}
    attributes = set()
    for index, cls in enumerate(classes):
        for spec, attribute, how, label in _plan(cls, async_path):
            hooks.setdefault(spec, []).append((_function(cls, attribute), index, how, label))
            attributes.add(attribute)
    for spec, chain in hooks.items():
        if spec.kind is HookKind.REVERSED:
            chain.reverse()
    return _Layout({spec: tuple(chain) for spec, chain in hooks.items()}, frozenset(attributes))


def _function(cls: type, attribute: str) -> Callable[..., Any]:
    """What calling ``instance.<attribute>(*args)`` calls, as ``function(instance, *args)``."""
    found = inspect.getattr_static(cls, attribute)
    if inspect.isfunction(found):
        return found

    def bound(instance: object, *args: Any) -> Any:  # a staticmethod, classmethod, callable...
        return getattr(instance, attribute)(*args)

    return bound


def _per_request(
    instances: list[_MiddlewareBase], async_path: bool, trace: HookTrace | None
) -> dict[HookSpec[..., Any], tuple[Hook, ...]]:
    """The hooks bound to these instances (when one holds a hook itself, or for tracing)."""
    hooks: dict[HookSpec[..., Any], list[Hook]] = {}
    for index, instance in enumerate(instances):
        for spec, attribute, how, label in _plan(type(instance), async_path):  # type: ignore[arg-type]
            bound = getattr(instance, attribute)
            if trace is not None:
                bound = trace.wrap(
                    bound,
                    spec.name,
                    label,
                    wrap=spec.kind is HookKind.WRAP,
                    is_async=how in _ASYNC_CALLS,
                )
            hooks.setdefault(spec, []).append((_ignoring_instance(bound), index, how, label))
    for spec, chain in hooks.items():
        if spec.kind is HookKind.REVERSED:
            chain.reverse()
    return {spec: tuple(chain) for spec, chain in hooks.items()}


def _ignoring_instance(bound: Callable[..., Any]) -> Callable[..., Any]:
    def call(_instance: object, *args: Any) -> Any:
        return bound(*args)

    return call


_NO_HOOKS: Final[dict[HookSpec[..., Any], tuple[Hook, ...]]] = {}
"""The table of a request without middleware (never written to)."""


class HookTable:
    """One request's middleware instances and, per hook, the hooks to call in order.

    Every method returns a flow (see ``_drive``): the caller ``yield from``s it, so one chain or
    onion serves both colours. Callers test ``has`` first where a hook is usually absent: an absent
    hook then costs one dict lookup and no generator.

    Which hooks run, in which order and how, is worked out once per sequence of middleware classes
    (``_layout``); a request's table only points at it and at the request's instances, so building
    one costs next to nothing whatever the number of hooks.
    """

    __slots__ = ("async_path", "boundary_hooks", "hooks", "instances", "step_hooks")

    def __init__(
        self,
        instances: list[_MiddlewareBase],
        *,
        async_path: bool = True,
        trace: HookTrace | None = None,
    ) -> None:
        self.instances = instances
        self.async_path = async_path
        hooks: dict[HookSpec[..., Any], tuple[Hook, ...]] = _NO_HOOKS
        if instances:
            layout = _layout(tuple(map(type, instances)), async_path)
            hooks = layout.hooks
            if trace is not None or any(_shadows(i, layout.attributes) for i in instances):
                hooks = _per_request(instances, async_path, trace)
        self.hooks = hooks
        self.step_hooks = HOOKS.TRANSFORM_STEP_INPUT in hooks or HOOKS.WRAP_STEP in hooks
        """Whether a memoized step needs the hook path at all (else it is a plain memo lookup)."""
        self.boundary_hooks = HOOKS.AFTER_MEMOIZATION in hooks or HOOKS.BEFORE_EXECUTION in hooks
        """Whether anyone listens for the end of memoized state."""

    def has(self, spec: HookSpec[..., Any]) -> bool:
        return spec in self.hooks

    def call(self, spec: HookSpec[P, R], *args: P.args, **kwargs: P.kwargs) -> Flow[R | None]:
        """A forward/reversed chain; the last non-``None`` result is the chain's result.

        Hooks that finish without waiting run right here, so a chain of them yields no effect.
        """
        chain = self.hooks.get(spec, ())
        if not self.async_path:  # (``_run`` written out: this is called per step call)
            return self._chain(spec, chain, 0, args, None, False)
        return _started(self._achain(spec, chain, args, False))

    def observe(self, spec: HookSpec[P, None], *args: P.args, **kwargs: P.kwargs) -> Flow[None]:
        """An observer chain: an exception is logged and never changes the run."""
        return self._run(spec, args, True)

    def _run(self, spec: HookSpec[..., Any], args: tuple[Any, ...], observer: bool) -> Flow[Any]:
        chain = self.hooks.get(spec, ())
        if not self.async_path:
            return self._chain(spec, chain, 0, args, None, observer)
        # On the async path the whole chain is one coroutine, stepped here on the loop's thread
        # as the awaiting task would step it: a chain whose hooks never wait ends at once, and
        # only one that really waits leaves for an effect that waits in the task.
        return _started(self._achain(spec, chain, args, observer))

    async def _achain(
        self,
        spec: HookSpec[..., Any],
        chain: Sequence[Hook],
        args: tuple[Any, ...],
        observer: bool,
    ) -> Any:
        """A chain on the async path: async hooks awaited, sync ones called (in a worker thread
        for a ``blocking`` middleware)."""
        instances, result = self.instances, None
        for fn, index, how, label in chain:
            try:
                if how is _START:
                    value = await fn(instances[index], *args)
                elif how is _CALL:
                    value = fn(instances[index], *args)
                else:
                    value = await _bridge.run_in_thread(fn, instances[index], *args)
            except Exception as exc:
                _failed(spec, label, exc, observer)
                continue
            if value is not None:  # most hooks return None: no call for them
                result, args = _carried(spec, value, result, args, observer)
        return result

    def _chain(
        self,
        spec: HookSpec[..., Any],
        chain: Sequence[Hook],
        start: int,
        args: tuple[Any, ...],
        result: Any,
        observer: bool,
    ) -> Flow[Any]:
        """A chain on the sync path, from hook ``start``: sync hooks called, async ones that
        cannot wait run here, any other async hook waits on the event loop (an effect)."""
        instances = self.instances
        for hook in chain[start:] if start else chain:
            fn, index, how, label = hook
            try:
                value = fn(instances[index], *args)
                if how is _CALL:
                    pass
                elif how is _EAGER:
                    value = _bridge.run_loop_free(value)
                elif how is _LOOP:  # (its position found only here, off the common path)
                    i = chain.index(hook, start)
                    return self._waiting(spec, chain, i, args, result, observer, Await(value))
            except Exception as exc:
                _failed(spec, label, exc, observer)
                continue
            if value is not None:  # most hooks return None: no call for them
                result, args = _carried(spec, value, result, args, observer)
        return _DONE_NONE if result is None else done(result)

    def _waiting(
        self,
        spec: HookSpec[..., Any],
        chain: Sequence[Hook],
        i: int,
        args: tuple[Any, ...],
        result: Any,
        observer: bool,
        waiting: Effect,
    ) -> Flow[Any]:
        """The rest of a sync-path chain whose hook ``i`` must wait: wait, then carry on."""
        try:
            value = yield waiting
        except Exception as exc:
            _failed(spec, chain[i][3], exc, observer)
            value = None
        result, args = _carried(spec, value, result, args, observer)
        return (yield from self._chain(spec, chain, i + 1, args, result, observer))

    def wrap(self, spec: HookSpec[[A], Any], arg: A, innermost: Callable[[], Flow[T]]) -> Flow[T]:
        """Run ``innermost`` inside the onion of ``spec`` (first registered outermost); with no
        such hook, ``innermost()`` itself, so an absent onion costs no generator."""
        chain = self.hooks.get(spec)
        if chain is None:
            return innermost()
        onion = _Onion(chain, self.instances, spec.name, arg, innermost, self.async_path)
        if not self.async_path:
            # A sync-path flow is only ever run by ``drive``, which would run the onion at once
            # anyway: do it here (an exception comes out of this call, where the caller's
            # ``yield from`` stands, as it would have come out of a yield).
            return done(onion.layer(0))
        # The async face steps the onion here too, as its task would: an onion whose layers and
        # innermost flow never wait is over at once (``Done``), and one that waits leaves for an
        # effect that waits in the task.
        return _started(onion.alayer(0))


def _shadows(instance: object, attributes: frozenset[str]) -> bool:
    """Whether an instance holds one of its hooks itself (set in ``__init__``, say)."""
    own: dict[str, Any] | None = getattr(instance, "__dict__", None)
    return own is not None and not attributes.isdisjoint(own)


_DONE_NONE: Final[Flow[Any]] = done(None)
"""What most chains give: no result, no effect (one shared instance; a ``Done`` never changes)."""


def _started(coro: Coroutine[Any, Any, Any]) -> Flow[Any]:
    """Step ``coro`` on this thread, in the awaiting task, until it first waits: ``Done`` with
    its value if it never does, else a flow whose effect waits for it in the task."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        value = stop.value
        return _DONE_NONE if value is None else done(value)
    return _resumed(coro, pending)


def _resumed(coro: Coroutine[Any, Any, Any], pending: Any) -> Flow[Any]:
    return (yield Resume(coro, pending))


def _carried(
    spec: HookSpec[..., Any], value: Any, result: Any, args: tuple[Any, ...], observer: bool
) -> tuple[Any, tuple[Any, ...]]:
    """A hook's non-``None`` return value becomes the chain's result (and, for a chaining hook,
    the next hook's first argument); observers return nothing that counts."""
    if value is None or observer:
        return result, args
    return value, ((value, *args[1:]) if spec.chains else args)


def _failed(spec: HookSpec[..., Any], label: str, exc: Exception, observer: bool) -> None:
    """An observer's exception is logged and ignored; any other hook's fails the chain."""
    if observer:
        _log.exception("inngest-mw: middleware %s.%s raised; ignored", label, spec.name)
        return
    if isinstance(exc, _PASS_THROUGH):
        raise exc
    raise _hook_error(label, spec.name, exc) from exc


def _hook_error(label: str, hook: str, exc: Exception) -> MiddlewareError:
    return MiddlewareError(f"middleware {label}.{hook} raised {type(exc).__name__}: {exc}")


_partial = functools.partial  # a global: the onion makes one per layer it enters
_INNER = "_inngest_mw_inner"


def mark_inner(exc: BaseException) -> None:
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


class _Onion:
    """A wrap hook's chain around the innermost flow, run by whichever face reaches it (``layer``
    from sync code, ``alayer`` from async code, each from layer ``0``).

    Layers of the face's colour call each other directly (``call_next`` is the next layer). A layer
    of the other colour is crossed without a thread where it can be (``Call``): a sync layer on the
    async face runs in a greenlet on the loop's thread, an async layer that cannot wait runs on the
    sync face directly. Otherwise it is bridged once (a worker thread, or the loop) and the layers
    inside it continue on its side. The innermost flow runs on the face of the function's colour
    (``OnPath``).
    """

    __slots__ = ("arg", "async_path", "chain", "depth", "hook", "innermost", "instances")

    def __init__(
        self,
        chain: Sequence[Hook],
        instances: list[_MiddlewareBase],
        hook: str,
        arg: Any,
        innermost: Callable[[], Flow[Any]],
        async_path: bool,
    ) -> None:
        self.chain, self.instances, self.hook, self.arg = chain, instances, hook, arg
        self.depth = len(chain)
        self.innermost, self.async_path = innermost, async_path

    def layer(self, i: int) -> Any:
        """Layer ``i`` and everything inside it, from sync code."""
        if i == self.depth:
            try:
                flow: object = self.innermost()
                if type(flow) is Done:  # (a replay's value: nothing to run on either face)
                    return flow.value
                return OnPath(cast("Flow[Any]", flow), self.async_path).run()
            except BaseException as exc:
                mark_inner(exc)
                raise
        fn, index, how, label = self.chain[i]
        if how is not _CALL and (how is _START or how is _LOOP):
            return _bridge.run_coroutine(self.alayer(i))
        inner = _partial(self.layer, i + 1)
        try:
            if how is _EAGER:  # an async hook that cannot wait: its call_next() runs inner
                ready = lambda: _bridge.Ready(inner)  # noqa: E731
                return _bridge.run_loop_free(fn(self.instances[index], ready, self.arg))
            # A sync hook: on the sync face, or inside a layer that took the onion to a thread.
            return fn(self.instances[index], inner, self.arg)
        except Exception as exc:
            if _own_error(exc):
                raise _hook_error(label, self.hook, exc) from exc
            raise

    async def alayer(self, i: int) -> Any:
        """Layer ``i`` and everything inside it, from async code."""
        if i == self.depth:
            try:
                flow: object = self.innermost()
                if type(flow) is Done:
                    return flow.value
                return await OnPath(cast("Flow[Any]", flow), self.async_path).arun()
            except BaseException as exc:
                mark_inner(exc)
                raise
        fn, index, how, label = self.chain[i]
        if how is _THREAD:
            return await _bridge.run_in_thread(self.layer, i)
        try:
            # An async layer. (Identity tests, not a set: an enum member hashes in Python.)
            if how is _START or how is _LOOP or how is _EAGER:
                return await fn(self.instances[index], _partial(self.alayer, i + 1), self.arg)
            hook = _partial(fn, self.instances[index])
            value = _bridge.enter_sync_layer(hook, _partial(self.alayer, i + 1), self.arg)
            if isinstance(value, _bridge.SyncLayer):
                value = await value.result()
            return value
        except Exception as exc:
            if _own_error(exc):
                raise _hook_error(label, self.hook, exc) from exc
            raise


class PipelineSpec:
    """The ordered middleware factories of a client or function, checked once at definition."""

    __slots__ = ("_made", "factories")

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
        # What a request makes: a class that overrides no hook is never instantiated.
        self._made = tuple(f for f in checked if not isinstance(f, type) or _overrides(f))

    def __add__(self, other: PipelineSpec) -> PipelineSpec:
        return PipelineSpec(self.factories + other.factories)

    def __bool__(self) -> bool:
        return bool(self.factories)

    def build(
        self,
        client: Inngest,
        raw_request: object,
        *,
        async_path: bool = True,
        trace: HookTrace | None = None,
    ) -> HookTable:
        """Fresh instances for one request; classes that override no hook are not even made.
        With a ``trace``, every hook call of the request is recorded in it (``hooktrace``)."""
        instances = []
        for factory in self._made:
            instance = factory(client, raw_request)
            if not isinstance(instance, _MiddlewareBase):
                raise ConfigError(
                    f"middleware factory {factory!r} returned {type(instance).__name__}, "
                    "not a Middleware or MiddlewareSync instance"
                )
            instances.append(instance)
        return HookTable(instances, async_path=async_path, trace=trace)
