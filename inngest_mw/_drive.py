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
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar, cast

from inngest_mw import _bridge

__all__ = [
    "Await",
    "Done",
    "Effect",
    "Flow",
    "InThread",
    "Invoke",
    "OnPath",
    "Resume",
    "adrive",
    "done",
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


class Done:
    """A flow that is already over: ``yield from`` it, or run it through ``OnPath``, and it gives
    ``value`` at once (so a piece of control flow that needs no effect costs no generator)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __iter__(self) -> Iterator[Any]:
        if self.value is None:
            # ``yield from`` an exhausted C iterator gives ``None`` with no StopIteration made,
            # a quarter of what raising one costs: most hook chains end with no result.
            return iter(_NOTHING)
        return self

    def __next__(self) -> NoReturn:
        raise StopIteration(self.value)


if TYPE_CHECKING:

    def done(value: T) -> Flow[T]:
        """``Done(value)``, typed as the flow it stands for."""

else:
    done = Done  # at run time the class itself: no cast to call on the hot paths


_NOTHING: tuple[()] = ()


class _Cursor:
    """Where a flow stands: what to send into it next (a value or an exception) and its result."""

    __slots__ = ("error", "flow", "result", "value")

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def next(self) -> Effect | None:
        """The flow's next effect, or ``None`` once it has returned (its value in ``result``)."""
        try:
            if self.error is None:
                return self.flow.send(self.value)
            return self.flow.throw(self.error)
        except StopIteration as stop:
            self.result = stop.value
            return None
        finally:
            self.error = None  # no frame -> exception -> traceback -> frame cycle

    def fail(self, exc: BaseException) -> None:
        self.value, self.error = None, exc


def drive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end from sync code."""
    cursor = _Cursor(flow)
    while (effect := cursor.next()) is not None:
        try:
            cursor.value = effect.run()
        except BaseException as exc:
            cursor.fail(exc)
    return cast(T, cursor.result)


async def adrive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end from async code: the same loop, awaiting each effect."""
    cursor = _Cursor(flow)
    while (effect := cursor.next()) is not None:
        try:
            cursor.value = await effect.arun()
        except BaseException as exc:
            cursor.fail(exc)
    return cast(T, cursor.result)


class Await(Effect):
    """Wait for a coroutine: awaited on the async face, run on the server's loop from sync code."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro

    def run(self) -> Any:
        return _bridge.run_coroutine(self.coro)

    async def arun(self) -> Any:
        return await self.coro


class Resume(Effect):
    """The rest of a coroutine that was started eagerly and is waiting on ``pending``.

    Async face only (see ``HookTable._chain``): the awaiting task waits for what the coroutine
    waits for and resumes it, as the task running it would have.
    """

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def run(self) -> Any:
        raise AssertionError("an eagerly started coroutine is resumed on the event loop only")

    async def arun(self) -> Any:
        coro, pending = self.coro, self.pending
        while True:
            try:
                await _bridge.wait_for(pending)
            except RuntimeError:
                coro.close()
                raise
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value


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


class OnPath(Effect):
    """Run a flow on the face of its own colour, whichever face reached it (the inside of an onion
    whose outer layers were of the other colour)."""

    __slots__ = ("async_path", "flow")

    def __init__(self, flow: Flow[Any], async_path: bool) -> None:
        self.flow = flow
        self.async_path = async_path

    def run(self) -> Any:
        done: object = self.flow
        if type(done) is Done:  # nothing to run on either face
            return done.value
        if self.async_path:
            return _bridge.run_coroutine(adrive(self.flow))
        return drive(self.flow)

    async def arun(self) -> Any:
        done: object = self.flow
        if type(done) is Done:
            return done.value
        if self.async_path:
            return await adrive(self.flow)
        return await _bridge.run_in_thread(drive, self.flow)
