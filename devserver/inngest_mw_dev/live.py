"""A live feed of what the engine does, for Server-Sent Events (the web UI's live updates).

Publishers (run history, ingested events, sync results) and subscribers (one queue per open
``/v1/stream`` connection) all live on the engine's event loop, so no locking is needed. A slow
subscriber loses messages rather than holding the engine back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["LiveFeed"]

_QUEUE_SIZE = 1000


class LiveFeed:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, kind: str, **payload: Any) -> None:
        if not self._subscribers:
            return
        message = {"kind": kind, **payload}
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
