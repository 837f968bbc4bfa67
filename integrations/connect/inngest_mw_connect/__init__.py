"""Run inngest-mw functions on a connect worker: an outbound WebSocket to Inngest, no HTTP server.

``await connect(client, functions)`` dials the gateway, registers the functions and serves their
calls until SIGTERM/SIGINT, reconnecting whenever the connection drops; ``run(...)`` does the
same from sync code. Calls go through the same handler and middleware as over HTTP.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Any

from inngest_mw import Function, Inngest
from inngest_mw_connect.worker import ConnectAuthError, ConnectError, ConnectionState, Worker

__all__ = ["ConnectAuthError", "ConnectError", "ConnectionState", "Worker", "connect", "run"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def connect(
    client: Inngest,
    functions: Sequence[Function[Any]],
    *,
    instance_id: str | None = None,
    max_concurrency: int | None = None,
    shutdown_signals: Sequence[signal.Signals] | None = _SIGNALS,
) -> None:
    """Serve ``functions`` over connect until shut down (a signal in ``shutdown_signals``), then
    drain: finish the calls in flight, take no new ones, return.

    ``instance_id`` names this worker stably across restarts (default: the host name);
    ``max_concurrency`` caps the calls it runs at once (the gateway sends no more).
    """
    worker = Worker(
        client,
        functions,
        instance_id=instance_id,
        max_concurrency=max_concurrency,
        shutdown_signals=shutdown_signals,
    )
    await worker.run()


def run(
    client: Inngest,
    functions: Sequence[Function[Any]],
    *,
    instance_id: str | None = None,
    max_concurrency: int | None = None,
    shutdown_signals: Sequence[signal.Signals] | None = _SIGNALS,
) -> None:
    """``connect`` from sync code: runs its own event loop until the worker has drained."""
    asyncio.run(
        connect(
            client,
            functions,
            instance_id=instance_id,
            max_concurrency=max_concurrency,
            shutdown_signals=shutdown_signals,
        )
    )
