"""Crossing between sync and async code: a sync face calling an async hook, and the reverse.

A sync function served by an async framework runs in a worker thread; its async hooks are sent back
to the server's loop. With no loop at all (a WSGI server), a private background loop runs them.
Context variables travel both ways (``copy_context`` into threads, the caller's context into tasks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

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
