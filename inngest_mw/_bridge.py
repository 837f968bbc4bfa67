"""Crossing between sync and async code: a sync face calling an async hook, and the reverse.

Most crossings need no thread at all:

* an async hook that cannot wait (``_source.needs_loop`` is false: no ``await`` but on
  ``call_next()``, no ``async for``/``with``, no use of the loop) runs to its end on the calling
  thread (``run_loop_free``);
* a sync wrap hook on the event loop runs on the loop's thread in a greenlet; when it calls
  ``call_next()`` the inner coroutine is stepped in that greenlet, and each time it must wait the
  greenlet hands the wait back to the task (``enter_sync_layer``), so nothing blocks and no thread
  is involved.

What remains hops: a sync function served by an async framework runs in a worker thread
(``run_in_thread``), and an async hook that may really wait, called from sync code, is sent back to
the server's loop, or with no loop at all (a WSGI server) to a private background loop
(``run_coroutine``). Context variables travel both ways (``copy_context`` into threads and
greenlets, the caller's context into tasks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import greenlet

T = TypeVar("T")

_home_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "inngest_mw_home_loop", default=None
)
_background: asyncio.AbstractEventLoop | None = None
# A pool of its own, sized well above what nested crossings can hold at once: a worker waiting on
# the loop must never starve the loop's own need for a worker (the default pool has cpu + 4).
_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=int(os.environ.get("INNGEST_MW_THREADS", "256")), thread_name_prefix="inngest-mw"
)
_background_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _background
    with _background_lock:
        if _background is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="inngest-mw-bridge", daemon=True).start()
            _background = loop
        return _background


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code that is not on an event loop thread."""
    loop = _home_loop.get() or _background_loop()
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run sync ``fn`` in a worker thread with the current context; its async hooks come back here."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    context.run(_home_loop.set, loop)
    return await loop.run_in_executor(_executor, context.run, fn, *args)


async def wait_for(pending: Any) -> None:
    """Wait, in the awaiting task, for what a coroutine stepped by hand yielded (``pending``).

    A coroutine awaiting a future marks it as awaited and yields it; a task would take the mark
    over and wake the coroutine when the future is done. The coroutine reads the outcome itself
    when it is sent ``None`` next, so the outcome is not read here.
    """
    if pending is None:
        await asyncio.sleep(0)  # a bare yield: give the loop one turn
    elif isinstance(pending, asyncio.Future):
        pending._asyncio_future_blocking = False
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await pending
    else:
        raise RuntimeError(f"an async hook awaited {pending!r}, which is not asyncio's")


class _Wait:
    """What a greenlet hands back to its task: something to wait for before stepping on."""

    __slots__ = ("pending",)

    def __init__(self, pending: Any) -> None:
        self.pending = pending


class _Raised:
    """A hook run in a greenlet raised ``exc``; the task raises it again."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Job:
    """One call of a sync wrap hook in a worker greenlet; ``call_next`` steps the inner layers."""

    __slots__ = ("arg", "hook", "inner", "task_side")

    def __init__(
        self,
        task_side: greenlet.greenlet,
        hook: Callable[..., Any],
        inner: Callable[[], Coroutine[Any, Any, Any]],
        arg: Any,
    ) -> None:
        self.task_side, self.hook, self.inner, self.arg = task_side, hook, inner, arg

    def call_next(self) -> Any:
        coro = self.inner()
        while True:
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value
            self.task_side.switch(_Wait(pending))


# Greenlets are made once and reused: making one costs several times more than two switches.
_local = threading.local()
_MAX_IDLE = 64


def _idle() -> list[greenlet.greenlet]:
    try:
        idle: list[greenlet.greenlet] = _local.idle
    except AttributeError:
        idle = _local.idle = []
    return idle


def _work(job: _Job) -> None:
    """A worker greenlet: run each job's hook, hand its outcome back, wait for the next job."""
    while True:
        try:
            outcome: Any = job.hook(job.call_next, job.arg)
        except greenlet.GreenletExit:
            raise
        except BaseException as exc:
            outcome = _Raised(exc)
        task_side = job.task_side
        del job  # nothing of a finished job stays reachable from an idle greenlet
        idle = _idle()
        if len(idle) >= _MAX_IDLE:
            task_side.switch(outcome)  # not kept: when switched away from, it is collected
            return
        idle.append(greenlet.getcurrent())
        job = task_side.switch(outcome)


def enter_sync_layer(
    hook: Callable[[Callable[[], Any], Any], Any],
    inner: Callable[[], Coroutine[Any, Any, Any]],
    arg: Any,
) -> Any:
    """Start sync wrap ``hook(call_next, arg)`` on the loop's thread; ``call_next`` awaits ``inner``.

    The hook runs in a worker greenlet sharing the task's context, so it behaves as a direct
    call would (a context variable it sets is seen by the layers inside it and by the task after
    it). Its ``call_next()`` steps ``inner()`` in the greenlet; whenever that coroutine must wait,
    the greenlet switches back here. Returns the hook's result, or a ``SyncLayer`` to
    ``await`` when the hook is waiting (so a hook whose inner layers never wait costs no
    coroutine here).
    """
    task_side = greenlet.getcurrent()
    idle = _idle()
    layer = idle.pop() if idle else greenlet.greenlet(_work)
    if layer.parent is not task_side:
        layer.parent = task_side
    layer.gr_context = task_side.gr_context
    outcome = layer.switch(_Job(task_side, hook, inner, arg))
    if isinstance(outcome, _Wait):
        return SyncLayer(layer, outcome)
    if isinstance(outcome, _Raised):
        raise outcome.exc
    return outcome


class SyncLayer:
    """A sync wrap hook waiting in its greenlet (see ``enter_sync_layer``): await its result."""

    __slots__ = ("layer", "waiting")

    def __init__(self, layer: greenlet.greenlet, waiting: _Wait) -> None:
        self.layer, self.waiting = layer, waiting

    async def result(self) -> Any:
        layer, outcome = self.layer, cast(Any, self.waiting)
        try:
            while isinstance(outcome, _Wait):
                await wait_for(outcome.pending)
                outcome = layer.switch()
        except BaseException:
            # This task is abandoned mid-wait (closed, or cancelled from outside the wait): end
            # the hook's greenlet too, running its cleanup, rather than leave it suspended.
            layer.throw(greenlet.GreenletExit)
            raise
        if isinstance(outcome, _Raised):
            raise outcome.exc
        return outcome


def run_loop_free(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that cannot wait (see ``_source.needs_loop``) to its end on this thread."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise RuntimeError("an async hook that was expected never to wait waited")


class Ready:
    """``call_next()`` for an async wrap hook run by ``run_loop_free``: awaiting it runs the inner
    layers (sync code) right away and gives their result, without ever suspending."""

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[[], Any]) -> None:
        self.inner = inner

    def __await__(self) -> Any:
        yield from ()
        return self.inner()
