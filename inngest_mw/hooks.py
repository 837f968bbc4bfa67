"""The hook set, declared once: each hook's name, how its chain runs and the types it is called with.

The pipeline dispatches through these ``HookSpec`` objects, never through strings, so a misspelt
hook in the core is a type error and a misspelt method on a middleware class is refused when the
class is created (``check_hook_names``). A spec's type parameters are the arguments the hook method
receives (for wrap hooks: the argument after ``call_next``) and what its chain returns, so mypy
checks every dispatch site. Arguments are passed positionally, as the official SDK's middleware
methods take them, rather than as one input object per call: that keeps middleware written for the
official SDK working unchanged and costs no allocation per call.
"""

from __future__ import annotations

import difflib
import enum
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, TypeVar

from inngest_mw.errors import ConfigError

if TYPE_CHECKING:
    from inngest_mw.context import Context, ContextSync
    from inngest_mw.event import Event, SendEventsResult
    from inngest_mw.function import Function
    from inngest_mw.handler import CommRequest, CommResponse
    from inngest_mw.memo import StepMemos
    from inngest_mw.pipeline import StepInfo, TransformOutputResult

__all__ = [
    "ALL_HOOKS",
    "HOOKS",
    "HookKind",
    "HookSpec",
    "check_hook_names",
]

P = ParamSpec("P")
R = TypeVar("R")


class HookKind(enum.Enum):
    """How the hooks of several middlewares compose."""

    FORWARD = "forward"
    """Run in registration order; a transform hook may change its arguments in place."""
    REVERSED = "reversed"
    """Run in reverse registration order (the "after" side of the onion)."""
    OBSERVER = "observer"
    """Run in order; an exception is logged and ignored, never changes the run."""
    WRAP = "wrap"
    """Nest around ``call_next``, the first registered outermost."""


class HookSpec(Generic[P, R]):
    """One hook: ``name`` is the middleware method; ``chains`` feeds each hook's non-``None``
    result to the next one as its first argument (``before_send_events``)."""

    __slots__ = ("chains", "kind", "name")

    def __init__(self, name: str, kind: HookKind, *, chains: bool = False) -> None:
        self.name = name
        self.kind = kind
        self.chains = chains

    def __repr__(self) -> str:
        return f"HookSpec({self.name!r})"


_F, _R, _O, _W = HookKind.FORWARD, HookKind.REVERSED, HookKind.OBSERVER, HookKind.WRAP
AnyContext = "Context | ContextSync"


class HOOKS:
    """Every hook, in the order they are documented (see ``docs/ARCHITECTURE.md``)."""

    TRANSFORM_INPUT: Final[HookSpec[[Context | ContextSync, Function[Any], StepMemos], None]] = (
        HookSpec("transform_input", _F)
    )
    AFTER_MEMOIZATION: Final[HookSpec[[], None]] = HookSpec("after_memoization", _R)
    BEFORE_EXECUTION: Final[HookSpec[[], None]] = HookSpec("before_execution", _F)
    AFTER_EXECUTION: Final[HookSpec[[], None]] = HookSpec("after_execution", _R)
    TRANSFORM_OUTPUT: Final[HookSpec[[TransformOutputResult], None]] = HookSpec(
        "transform_output", _R
    )
    BEFORE_RESPONSE: Final[HookSpec[[], None]] = HookSpec("before_response", _F)
    ON_RUN_START: Final[HookSpec[[Context | ContextSync], None]] = HookSpec("on_run_start", _O)
    ON_RUN_COMPLETE: Final[HookSpec[[Context | ContextSync, Any], None]] = HookSpec(
        "on_run_complete", _O
    )
    ON_RUN_ERROR: Final[HookSpec[[Context | ContextSync, BaseException, bool], None]] = HookSpec(
        "on_run_error", _O
    )
    TRANSFORM_STEP_INPUT: Final[HookSpec[[StepInfo], None]] = HookSpec("transform_step_input", _F)
    ON_STEP_START: Final[HookSpec[[StepInfo], None]] = HookSpec("on_step_start", _O)
    ON_STEP_COMPLETE: Final[HookSpec[[StepInfo, Any], None]] = HookSpec("on_step_complete", _O)
    ON_STEP_ERROR: Final[HookSpec[[StepInfo, BaseException, bool], None]] = HookSpec(
        "on_step_error", _O
    )
    WRAP_REQUEST: Final[HookSpec[[CommRequest], CommResponse]] = HookSpec("wrap_request", _W)
    WRAP_FUNCTION: Final[HookSpec[[Context | ContextSync], Any]] = HookSpec("wrap_function", _W)
    WRAP_STEP: Final[HookSpec[[StepInfo], Any]] = HookSpec("wrap_step", _W)
    WRAP_STEP_HANDLER: Final[HookSpec[[StepInfo], Any]] = HookSpec("wrap_step_handler", _W)
    WRAP_SEND: Final[HookSpec[[list[Event]], list[str]]] = HookSpec("wrap_send", _W)
    BEFORE_SEND_EVENTS: Final[HookSpec[[list[Event]], list[Event]]] = HookSpec(
        "before_send_events", _F, chains=True
    )
    AFTER_SEND_EVENTS: Final[HookSpec[[SendEventsResult], None]] = HookSpec("after_send_events", _R)

    ALL: Final[tuple[HookSpec[..., Any], ...]] = (
        TRANSFORM_INPUT,
        AFTER_MEMOIZATION,
        BEFORE_EXECUTION,
        AFTER_EXECUTION,
        TRANSFORM_OUTPUT,
        BEFORE_RESPONSE,
        ON_RUN_START,
        ON_RUN_COMPLETE,
        ON_RUN_ERROR,
        TRANSFORM_STEP_INPUT,
        ON_STEP_START,
        ON_STEP_COMPLETE,
        ON_STEP_ERROR,
        WRAP_REQUEST,
        WRAP_FUNCTION,
        WRAP_STEP,
        WRAP_STEP_HANDLER,
        WRAP_SEND,
        BEFORE_SEND_EVENTS,
        AFTER_SEND_EVENTS,
    )


ALL_HOOKS: Final = tuple(spec.name for spec in HOOKS.ALL)
"""Every hook's method name."""
_BY_NAME: Final = {spec.name: spec for spec in HOOKS.ALL}
TWIN_SUFFIX: Final = "_async"
"""``MiddlewareSync`` wrap hooks may have an ``async def <hook>_async`` twin for the async path."""
_HOOK_PREFIXES: Final = ("on_", "before_", "after_", "transform_", "wrap_")


def spec_named(name: str) -> HookSpec[..., Any] | None:
    return _BY_NAME.get(name)


def check_hook_names(cls: type, names: list[str], *, twins: bool) -> None:
    """Refuse a method that looks like a hook but is none (``on_step_strat``), naming the nearest.

    ``names`` are the attributes the class itself defines; ``twins`` allows ``<wrap hook>_async``.
    """
    for name in names:
        if name.startswith("_") or name in _BY_NAME:
            continue
        if twins and name.endswith(TWIN_SUFFIX):
            base = _BY_NAME.get(name.removesuffix(TWIN_SUFFIX))
            if base is not None and base.kind is HookKind.WRAP:
                continue
        nearest = difflib.get_close_matches(name, ALL_HOOKS, n=1, cutoff=0.8)
        if not name.startswith(_HOOK_PREFIXES) and not nearest:
            continue
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        raise ConfigError(
            f"middleware {cls.__qualname__}.{name} looks like a hook but is not one{hint} "
            f"(hooks: {', '.join(ALL_HOOKS)}; rename a helper method with a leading underscore)"
        )
