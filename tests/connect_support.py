"""Helpers for the connect tests: a worker on its own event loop in a thread, and worker processes.

Every wait has a deadline so a broken gateway or worker fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from engine_support import get_json, poll
from inngest_mw_connect import Worker

import inngest_mw

HERE = Path(__file__).resolve().parent


class WorkerThread:
    """A ``Worker`` running in a daemon thread; ``stop()`` drains it."""

    def __init__(
        self,
        client: inngest_mw.Inngest,
        functions: Sequence[inngest_mw.Function[Any]],
        **options: Any,
    ) -> None:
        self.worker = Worker(client, functions, shutdown_signals=None, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="connect-worker", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self.worker.run()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.failure = exc
            self._ready.set()

    def start(self, *, wait_ready: bool = True) -> WorkerThread:
        self.thread.start()
        assert self._ready.wait(10), "the worker thread did not start"
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        loop = self._loop
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(self.worker.wait_ready(), loop)
        future.result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.shutdown()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not drain and stop in time"

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.thread.is_alive():
            self.stop()


def workers_of(engine_url: str, app: str) -> list[dict[str, Any]]:
    """The connected workers of ``app``, as ``GET /v1/apps`` lists them."""
    apps = get_json(f"{engine_url}/v1/apps")["data"]
    for entry in apps:
        if entry["name"] == app:
            workers: list[dict[str, Any]] = entry.get("workers", [])
            return workers
    return []


def wait_workers(
    engine_url: str, app: str, count: int, *, status: str = "READY", timeout: float = 20.0
) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = poll(
        lambda: [w for w in workers_of(engine_url, app) if w["status"] == status],
        lambda ws: len(ws) == count,
        timeout=timeout,
        what=f"{count} {status} connect worker(s) of {app}",
    )
    return workers


def worker_process(
    script: str, engine_url: str, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python tests/<script> ENGINE_URL ARGS...`` as a child process, output to ``log``."""
    environment = {**os.environ, "INNGEST_DEV": engine_url, **(env or {})}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(HERE / script), engine_url, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
        )


def end(process: subprocess.Popen[bytes]) -> None:
    """Kill a child process that is still running, and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(10)
