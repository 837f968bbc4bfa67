"""Run an ``Engine`` on its own event loop in a background thread (tests, notebooks, demos).

``with EngineThread(db_path, port=0) as engine: engine.url`` starts it and stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from inngest_mw_dev.engine import Engine

__all__ = ["EngineThread"]

T = TypeVar("T")


class EngineThread:
    """A started engine in a daemon thread; keyword arguments go to ``Engine``."""

    def __init__(self, db_path: str | Path, **options: Any) -> None:
        self.engine = Engine(db_path, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        return self.engine.url

    def start(self, timeout: float = 10.0) -> EngineThread:
        self._thread = threading.Thread(target=self._main, name="inngest-mw-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("engine did not start in time")
        if self._failure is not None:
            raise self._failure  # as the engine raised it: an unusable --db is one sentence
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.engine.start()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.engine.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the engine's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("engine thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine and wait for its thread; calling it again does nothing.

        Raises ``TimeoutError`` if the engine is still stopping after ``timeout`` seconds (it
        still holds its database then: another engine on the same file would be refused).
        """
        loop, self._loop = self._loop, None
        if loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                loop.call_soon_threadsafe(self._stopped.set)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the engine did not stop within {timeout:g} s")

    def __enter__(self) -> EngineThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
