"""The engine's store thread: the one thread that runs its SQLite work, off the event loop.

The engine's connection is opened on this thread and refuses any other (``check_same_thread``).
The loop hands it whole jobs, never single statements: a scheduler tick (lease, apply outcomes,
transitions, prepare the next calls: one transaction), a batch of accepted events (the durable
insert, then the ack), the reads of one API or UI request. So a job costs one hop each way, and
while SQLite writes or syncs the file (the GIL released) the loop goes on serving HTTP.

What a job wants done on the loop (publishing history to the live feed, waking the scheduler)
it asks with ``later``; those actions run on the loop once the job has finished, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["StoreThread"]

log = logging.getLogger("inngest_mw_dev")
T = TypeVar("T")
_Actions = list[Callable[[], None]]
_Done = Callable[[Any, BaseException | None, _Actions], None]


class StoreThread:
    """One daemon thread, named ``inngest-mw-store``, running jobs in the order submitted.

    Lighter than an executor: a job is one ``SimpleQueue.put`` to the thread and one
    ``call_soon_threadsafe`` back to the loop.
    """

    NAME = "inngest-mw-store"

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], _Done] | None]
        self._jobs = queue.SimpleQueue()
        self._actions: _Actions = []
        self._batches: dict[Callable[[list[Any]], None], list[Any]] = {}
        self._thread = threading.Thread(target=self._main, name=self.NAME, daemon=True)
        self._thread.start()
        self.ident = self._thread.ident
        """The thread's ``threading.get_ident()``."""

    def on_thread(self) -> bool:
        return threading.get_ident() == self.ident

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        """Run ``job(*args)`` on the store thread; then, on the loop, the actions it left."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def done(result: Any, error: BaseException | None, actions: _Actions) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error, actions)

        self._jobs.put((job, args, done))
        return await future

    def call(self, job: Callable[..., T], *args: Any) -> T:
        """Run ``job(*args)`` on the store thread from a thread that is neither it nor the loop
        (tests, tools), waiting for it; actions it leaves run on the calling thread."""
        if self.on_thread():
            raise RuntimeError("StoreThread.call from the store thread itself")
        future: Future[tuple[Any, BaseException | None, _Actions]] = Future()

        def done(result: Any, error: BaseException | None, actions: _Actions) -> None:
            future.set_result((result, error, actions))

        self._jobs.put((job, args, done))
        result, error, actions = future.result()
        _perform(actions)
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    def later(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the current job has finished, on the thread that awaits it
        (directly when not called from a job)."""
        if self.on_thread():
            self._actions.append(action)
        else:
            action()

    def later_batch(self, action: Callable[[list[T]], None], item: T) -> None:
        """``later`` for many items: ``action`` runs once per job, with every item given to it
        in that job, in order (at once, with ``[item]``, when not called from a job)."""
        if not self.on_thread():
            action([item])
            return
        batch = self._batches.get(action)
        if batch is None:
            batch = self._batches[action] = []
            self._actions.append(lambda: action(batch))
        batch.append(item)

    def _main(self) -> None:
        while (entry := self._jobs.get()) is not None:
            job, args, done = entry
            result, error = None, None
            try:
                result = job(*args)
            except BaseException as exc:  # handed to whoever awaits the job
                error = exc
            actions, self._actions = self._actions, []
            self._batches.clear()
            done(result, error, actions)
            del entry, job, args, done, result, error, actions

    def stop(self) -> None:
        """Finish the submitted jobs and end the thread."""
        self._jobs.put(None)
        self._thread.join()


def _settle(
    future: asyncio.Future[Any], result: Any, error: BaseException | None, actions: _Actions
) -> None:
    """On the loop: a job's actions, then its result for the task awaiting it."""
    _perform(actions)
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _perform(actions: _Actions) -> None:
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("an action left by a store thread job failed")
