"""The two faces of the one driver: run a flow from sync code or await it from async code.

Control flow (the request sequence, each step's hook sequence, hook chains and onions, sending
events) is written once, as generators ("flows") that yield an ``Effect`` whenever something must
happen that depends on the colour of the caller: awaiting a coroutine, calling user code that may
be async, calling a wrap hook, hopping to a worker thread, doing I/O. ``drive`` performs each effect
by calling; ``adrive`` by awaiting. Neither holds any logic of its own (the sans-I/O pattern of h11;
``docs/ARCHITECTURE.md`` says why this shape was chosen over generated twins).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeAlias, TypeVar

from inngest_mw import _bridge

__all__ = [
    "Await",
    "CallWrap",
    "Effect",
    "Flow",
    "InThread",
    "Invoke",
    "OnPath",
    "adrive",
    "drive",
]

T = TypeVar("T")


class Effect:
    """Something a flow needs done; ``run`` does it from sync code, ``arun`` from async code."""

    __slots__ = ()

    def run(self) -> Any:
        raise NotImplementedError

    async def arun(self) -> Any:
        raise NotImplementedError


Flow: TypeAlias = Generator[Effect, Any, T]
"""A piece of control flow: yields effects, receives their results, returns its value."""


def drive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end from sync code."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            error = None  # no frame -> exception -> traceback -> frame cycle
        try:
            value = effect.run()
        except BaseException as exc:
            value, error = None, exc


async def adrive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end from async code (the same loop as ``drive``, awaiting effects)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            error = None
        try:
            value = await effect.arun()
        except BaseException as exc:
            value, error = None, exc


class Await(Effect):
    """Wait for a coroutine: awaited on the async face, run on the server's loop from sync code."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro

    def run(self) -> Any:
        return _bridge.run_coroutine(self.coro)

    async def arun(self) -> Any:
        return await self.coro


class Invoke(Effect):
    """Call user code (a handler, a step's function, a parallel branch) that may return an awaitable."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...] | list[Any] = ()) -> None:
        self.fn = fn
        self.args = args

    def run(self) -> Any:
        return self.fn(*self.args)

    async def arun(self) -> Any:
        result = self.fn(*self.args)
        if inspect.isawaitable(result):
            result = await result
        return result


class InThread(Effect):
    """Run a flow of sync user code: inline from sync code, in a worker thread from async code."""

    __slots__ = ("flow",)

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow

    def run(self) -> Any:
        return drive(self.flow)

    async def arun(self) -> Any:
        return await _bridge.run_in_thread(drive, self.flow)


class CallWrap(Effect):
    """Call one wrap hook ``fn(call_next, arg)``; ``call_next`` runs the flow of the layers inside.

    A hook of the other colour is bridged once, and the layers inside it stay on its side: a sync
    hook on the async face runs in a worker thread and drives the rest from there (a stack of sync
    hooks shares one thread); an async hook on the sync face runs on the loop. ``OnPath`` brings
    the innermost flow back to the colour of the function.
    """

    __slots__ = ("arg", "fn", "is_async", "rest")

    def __init__(
        self, fn: Callable[..., Any], is_async: bool, rest: Callable[[], Flow[Any]], arg: Any
    ) -> None:
        self.fn = fn
        self.is_async = is_async
        self.rest = rest
        self.arg = arg

    def run(self) -> Any:
        rest = self.rest
        if not self.is_async:
            return self.fn(lambda: drive(rest()), self.arg)
        return _bridge.run_coroutine(self.fn(lambda: adrive(rest()), self.arg))

    async def arun(self) -> Any:
        rest = self.rest
        if self.is_async:
            result: Awaitable[Any] = self.fn(lambda: adrive(rest()), self.arg)
            return await result
        return await _bridge.run_in_thread(self.fn, lambda: drive(rest()), self.arg)


class OnPath(Effect):
    """Run a flow on the face of its own colour, whichever face reached it (the inside of an onion
    whose outer layers were of the other colour)."""

    __slots__ = ("async_path", "flow")

    def __init__(self, flow: Flow[Any], async_path: bool) -> None:
        self.flow = flow
        self.async_path = async_path

    def run(self) -> Any:
        if self.async_path:
            return _bridge.run_coroutine(adrive(self.flow))
        return drive(self.flow)

    async def arun(self) -> Any:
        if self.async_path:
            return await adrive(self.flow)
        return await _bridge.run_in_thread(drive, self.flow)
