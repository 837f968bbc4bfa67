"""Helpers for the engine's end-to-end tests: serve an ASGI app in a thread, send events, poll runs.

Every wait has a deadline so a broken engine fails a test instead of hanging it.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import fastapi
import httpx
import inngest
import inngest.fast_api
import uvicorn

DEFAULT_TIMEOUT = 15.0
START_TIMEOUT = 60.0
"""For a Python process to start and listen: its imports alone can take tens of seconds on a
busy two-core machine."""


class FakeClock:
    """Real time plus an offset the test moves forward, so cron ticks fall due at once.

    It starts 5 s into a minute, so nearly a minute of real time passes before a minute boundary
    (a cron tick) is crossed without the test moving the clock: a test that takes a few seconds
    sees only the ticks it moves the clock over.
    """

    def __init__(self) -> None:
        now = time.time()
        self.offset = (now // 60 + 1) * 60 + 5 - now

    def __call__(self) -> float:
        return time.time() + self.offset


def dev_command(port: int, db: Path, *options: str) -> list[str]:
    """``python -m inngest_mw_dev dev --port PORT --db DB OPTIONS...`` as an argument list; the
    connect gateway on a free port unless ``options`` name one (the default port may be taken by
    an engine running on this machine, or by another test's)."""
    command = [sys.executable, "-m", "inngest_mw_dev", "dev", "--port", str(port), "--db", str(db)]
    gateway = [] if "--connect-port" in options else ["--connect-port", "0"]
    return [*command, *gateway, *options]


def engine_healthy(port: int) -> bool:
    """Whether an engine answers ``/health`` on 127.0.0.1:``port``."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AppServer:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("app server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_functions(client: inngest.Inngest, functions: Sequence[Any]) -> AppServer:
    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, list(functions))
    return AppServer(app)


def dev_client(app_id: str, engine_url: str, **options: Any) -> inngest.Inngest:
    return inngest.Inngest(
        app_id=app_id,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        **options,
    )


def sync(app: AppServer) -> None:
    response = httpx.put(app.url, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "error" not in body, body


def send(engine_url: str, events: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
    response = httpx.post(f"{engine_url}/e/test-key", json=events, timeout=10)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["ids"]
    return ids


def poll(
    fetch: Callable[[], Any],
    done: Callable[[Any], bool],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        time.sleep(0.05)
        value = fetch()
    return value


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    return response.json()


def runs_for_event(
    engine_url: str,
    event_id: str,
    count: int = 1,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[dict[str, Any]]:
    url = f"{engine_url}/v1/events/{event_id}/runs"
    runs: list[dict[str, Any]] = poll(
        lambda: get_json(url, headers)["data"],
        lambda data: len(data) >= count,
        timeout=timeout,
        what=f"{count} run(s) for event {event_id}",
    )
    return runs


def get_run(engine_url: str, run_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    run: dict[str, Any] = get_json(f"{engine_url}/v1/runs/{run_id}", headers)["data"]
    return run


def wait_run(
    engine_url: str,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    run: dict[str, Any] = poll(
        lambda: get_run(engine_url, run_id, headers),
        lambda r: r["status"] != "Running",
        timeout=timeout,
        what=f"run {run_id} to end",
    )
    return run


def run_for_event(
    engine_url: str,
    event_id: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """The single run an event started, waited until it ends."""
    (run,) = runs_for_event(engine_url, event_id, headers=headers, timeout=timeout)
    return wait_run(engine_url, run["run_id"], headers=headers, timeout=timeout)


def wait_step(
    engine_url: str, run_id: str, name: str, status: str, *, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    def find(run: dict[str, Any]) -> dict[str, Any] | None:
        return next((s for s in run["steps"] if s["name"] == name), None)

    run: dict[str, Any] = poll(
        lambda: get_run(engine_url, run_id),
        lambda r: (step := find(r)) is not None and step["status"] == status,
        timeout=timeout,
        what=f"step {name} of run {run_id} to be {status}",
    )
    step = find(run)
    assert step is not None
    return step
