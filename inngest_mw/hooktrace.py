"""A per-request trace of the middleware hooks that ran, for a server that asks for it.

A call request carrying ``X-Inngest-MW-Trace: 1`` (the embedded engine sends it; Inngest's own
servers never do) gets the same header back on its response when any hook ran: a JSON record of which
middleware hooks ran, in the order they started, when, for how long, and what they raised. Nothing
is recorded unless the header asks: a request without it builds its hooks exactly as before, and
with it each bound hook is wrapped once, when the request's ``HookTable`` is built.

The record holds no user data: middleware labels, hook names, step IDs, times in microseconds, and
for a hook that raised its exception's type and the start of its message. It is bounded
(``MAX_ENTRIES`` hooks, ``MAX_HEADER_BYTES`` in all, each string cut short) so a step-heavy
request cannot grow a header past what an HTTP client accepts.

Wire format, version 1 (``{"v": 1, "h": [...], "more": N}``): each entry of ``h`` is
``[middleware, hook, start_us, duration_us, inner_us, step_id | null, error | null]``; ``start_us``
counts from the moment the request's hooks were built, ``inner_us`` is the part of a wrap hook's
duration spent inside ``call_next`` (0 for other hooks), ``error`` is ``"Type: message"``, and
``more`` says how many entries were left out to keep within the bounds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from inngest_mw._const import Header

__all__ = [
    "MAX_ENTRIES",
    "MAX_HEADER_BYTES",
    "HookCall",
    "HookTrace",
    "SeenTrace",
    "decode",
    "requested",
]

FORMAT_VERSION: Final = 1
MAX_ENTRIES: Final = 64
MAX_HEADER_BYTES: Final = 6 * 1024
MAX_LABEL: Final = 64
MAX_ERROR: Final = 160
_ASK: Final = "1"

_now: Callable[[], int] = time.perf_counter_ns
_string: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""A JSON string literal in ASCII only (a header value)."""


def requested(headers: Mapping[str, str]) -> bool:
    """Whether a call request asks for the hook trace."""
    return headers.get(Header.MW_TRACE, "").strip() == _ASK


class HookTrace:
    """The hooks one request ran, recorded by wrappers made with ``wrap``."""

    __slots__ = ("dropped", "entries", "started")

    def __init__(self) -> None:
        self.started = _now()
        self.entries: list[list[Any]] = []
        self.dropped = 0

    def begin(self, label: str, hook: str, step: str | None) -> list[Any]:
        """A new entry, started now (kept only while there is room)."""
        entry: list[Any] = [label, hook, _now() - self.started, 0, 0, step, None]
        if len(self.entries) < MAX_ENTRIES:
            self.entries.append(entry)
        else:
            self.dropped += 1
        return entry

    def encode(self) -> str:
        """The response header's value, within ``MAX_HEADER_BYTES``."""
        kept: list[str] = []
        size = 30  # the envelope and a "more" count
        for entry in self.entries:
            label, hook, start, duration, inner, step, error = entry
            text = (
                f"[{_string(_cut(label, MAX_LABEL))},{_string(hook)},{start // 1000},"
                f"{duration // 1000},{inner // 1000},"
                f"{'null' if step is None else _string(_cut(step, MAX_LABEL))},"
                f"{'null' if error is None else _string(_cut(error, MAX_ERROR))}]"
            )
            if size + len(text) + 1 > MAX_HEADER_BYTES:
                break
            kept.append(text)
            size += len(text) + 1
        more = self.dropped + len(self.entries) - len(kept)
        tail = f',"more":{more}' if more else ""
        return f'{{"v":{FORMAT_VERSION},"h":[{",".join(kept)}]{tail}}}'

    def wrap(
        self, fn: Callable[..., Any], hook: str, label: str, *, wrap: bool, is_async: bool
    ) -> Any:
        """``fn`` (a bound hook), recording each call; the same colour and signature as ``fn``."""
        steps = hook in _STEP_HOOKS
        if wrap:
            return (self._wrap_async if is_async else self._wrap)(fn, hook, label, steps)
        return (self._chain_async if is_async else self._chain)(fn, hook, label, steps)

    def _chain(
        self, fn: Callable[..., Any], hook: str, label: str, steps: bool
    ) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            if len(self.entries) >= MAX_ENTRIES:  # full: count the call, time nothing
                self.dropped += 1
                return fn(*args)
            entry = self.begin(label, hook, _step_of(args) if steps else None)
            try:
                return fn(*args)
            except BaseException as exc:
                entry[6] = _describe(exc)
                raise
            finally:
                entry[3] = _now() - self.started - entry[2]

        return timed

    def _chain_async(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], hook: str, label: str, steps: bool
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def timed(*args: Any) -> Any:
            if len(self.entries) >= MAX_ENTRIES:
                self.dropped += 1
                return await fn(*args)
            entry = self.begin(label, hook, _step_of(args) if steps else None)
            try:
                return await fn(*args)
            except BaseException as exc:
                entry[6] = _describe(exc)
                raise
            finally:
                entry[3] = _now() - self.started - entry[2]

        return timed

    def _wrap(
        self, fn: Callable[..., Any], hook: str, label: str, steps: bool
    ) -> Callable[..., Any]:
        def timed(call_next: Callable[[], Any], arg: Any) -> Any:
            if len(self.entries) >= MAX_ENTRIES:
                self.dropped += 1
                return fn(call_next, arg)
            entry = self.begin(label, hook, _step_of((arg,)) if steps else None)
            passed = [0]  # the id of what call_next raised: no reference, so no cycle

            def inner() -> Any:
                began = _now()
                try:
                    return call_next()
                except BaseException as exc:
                    passed[0] = id(exc)
                    raise
                finally:
                    entry[4] += _now() - began

            try:
                return fn(inner, arg)
            except BaseException as exc:
                if id(exc) != passed[0]:
                    entry[6] = _describe(exc)
                raise
            finally:
                entry[3] = _now() - self.started - entry[2]

        return timed

    def _wrap_async(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], hook: str, label: str, steps: bool
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def timed(call_next: Callable[[], Any], arg: Any) -> Any:
            if len(self.entries) >= MAX_ENTRIES:
                self.dropped += 1
                return await fn(call_next, arg)
            entry = self.begin(label, hook, _step_of((arg,)) if steps else None)
            passed = [0]  # the id of what call_next raised: no reference, so no cycle

            async def inner() -> Any:
                began = _now()
                try:
                    return await call_next()
                except BaseException as exc:
                    passed[0] = id(exc)
                    raise
                finally:
                    entry[4] += _now() - began

            try:
                return await fn(inner, arg)
            except BaseException as exc:
                if id(exc) != passed[0]:
                    entry[6] = _describe(exc)
                raise
            finally:
                entry[3] = _now() - self.started - entry[2]

        return timed


_STEP_HOOKS: Final = frozenset(
    {
        "transform_step_input",
        "on_step_start",
        "on_step_complete",
        "on_step_error",
        "wrap_step",
        "wrap_step_handler",
    }
)
"""The hooks whose first argument is the step's ``StepInfo``."""


def _step_of(args: tuple[Any, ...]) -> str | None:
    """The step a step hook was called for: its first argument is a ``StepInfo`` (told apart by
    its fields, as ``pipeline`` imports this module)."""
    info = args[0] if args else None
    step_id = getattr(info, "id", None)
    if isinstance(step_id, str) and isinstance(getattr(info, "hashed_id", None), str):
        return step_id
    return None


def _describe(exc: BaseException) -> str:
    message = str(exc).replace("\n", " ").strip()
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _cut(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


# -- the reading side (the engine) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HookCall:
    """One hook call as a server read it from the header."""

    middleware: str
    hook: str
    start_us: int
    duration_us: int
    inner_us: int
    step: str | None
    error: str | None

    @property
    def self_us(self) -> int:
        """The hook's own time: its duration less what it spent in ``call_next``."""
        return max(0, self.duration_us - self.inner_us)

    def to_json(self) -> dict[str, Any]:
        return {
            "middleware": self.middleware,
            "hook": self.hook,
            "start_us": self.start_us,
            "duration_us": self.duration_us,
            "self_us": self.self_us,
            "step": self.step,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class SeenTrace:
    """A decoded trace: the calls, how many were left out, and what was wrong with the header."""

    calls: tuple[HookCall, ...]
    more: int = 0
    problem: str | None = None


_MAX_INT: Final = 10**12  # microseconds: some eleven days, far past any request


def decode(value: str | None) -> SeenTrace | None:
    """Read a response's trace header; never raises. ``None`` when there is no header.

    A header that is not the format above gives a trace with no calls and a ``problem``
    saying why; an entry that is not well formed is left out (and counted in ``more``).
    """
    if value is None:
        return None
    if len(value) > 2 * MAX_HEADER_BYTES:
        return SeenTrace((), 0, f"the trace header is over {2 * MAX_HEADER_BYTES} bytes")
    try:
        body = json.loads(value)
    except (ValueError, RecursionError):
        return SeenTrace((), 0, "the trace header is not JSON")
    if not isinstance(body, dict) or body.get("v") != FORMAT_VERSION:
        return SeenTrace((), 0, f"the trace header is not version {FORMAT_VERSION}")
    raw = body.get("h")
    if not isinstance(raw, list):
        return SeenTrace((), 0, 'the trace header has no "h" list')
    more = body.get("more", 0)
    skipped = more if _is_count(more) else 0
    calls: list[HookCall] = []
    for item in raw:
        call = _call(item) if len(calls) < MAX_ENTRIES else None
        if call is None:
            skipped += 1
        else:
            calls.append(call)
    return SeenTrace(tuple(calls), min(skipped, _MAX_INT))


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_INT


def _text(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _cut("".join(c if c.isprintable() else " " for c in value[: limit * 2]), limit)


def _call(item: object) -> HookCall | None:
    if not isinstance(item, list) or len(item) != 7:
        return None
    label, hook, start, duration, inner, step, error = item
    middleware, name = _text(label, MAX_LABEL), _text(hook, MAX_LABEL)
    if middleware is None or name is None:
        return None
    if not (_is_count(start) and _is_count(duration) and _is_count(inner)):
        return None
    if (step is not None and _text(step, MAX_LABEL) is None) or (
        error is not None and _text(error, MAX_ERROR) is None
    ):
        return None
    return HookCall(
        middleware,
        name,
        start,
        duration,
        min(inner, duration),
        None if step is None else _text(step, MAX_LABEL),
        None if error is None else _text(error, MAX_ERROR),
    )
