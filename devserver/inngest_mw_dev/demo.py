"""``inngest-mw demo``: the embedded engine, the example app under uvicorn, one event, one run.

Everything binds to 127.0.0.1 on free ports and stops before the command returns.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import inngest_mw
from inngest_mw_dev.cli import print_run
from inngest_mw_dev.thread import EngineThread

__all__ = ["run_demo", "serve_app"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yield its Inngest URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the example app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/api/inngest"
    finally:
        server.should_exit = True
        thread.join(10)


def _wait_for_run(http: httpx.Client, event_id: str, timeout: float = 60) -> dict[str, Any]:
    """The one run ``event_id`` starts, once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = http.get(f"/v1/events/{event_id}/runs").json()["data"]
        if runs and runs[0]["status"] not in ("Queued", "Running"):
            run: dict[str, Any] = http.get(f"/v1/runs/{runs[0]['run_id']}").json()["data"]
            return run
        time.sleep(0.2)
    raise TimeoutError(f"the run for event {event_id} did not finish in {timeout:.0f}s")


def _sent_events(run: dict[str, Any], step_name: str) -> list[str]:
    """The IDs of the events a run's send-event step sent (its output), if the step completed."""
    step = next((s for s in run["steps"] if s["name"] == step_name), None)
    if step is None or step["status"] != "Completed":
        return []
    ids: list[str] = step["output"]
    return ids


def run_demo(db_path: str | None = None) -> int:
    with contextlib.ExitStack() as stack:
        if db_path is None:
            db_path = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "demo.db")
        engine = stack.enter_context(EngineThread(db_path, port=0, retry_base=0.5))
        print(f"engine   {engine.url}  (SQLite: {db_path})")
        os.environ["INNGEST_BASE_URL"] = engine.url  # the example app's client targets this engine
        from inngest_mw_dev import demo_app

        app_url = stack.enter_context(serve_app(demo_app.app))
        print(f"app      {app_url}  (functions: {', '.join(f.id for f in demo_app.functions)})")
        client = demo_app.client
        http = stack.enter_context(httpx.Client(base_url=engine.url, timeout=30))
        synced = httpx.put(app_url, timeout=30)
        synced.raise_for_status()
        print(f"synced   {synced.json()['message']}")
        order = {
            "id": "A-1001",
            "sku": "tea-earl-grey",
            "qty": 3,
            "price": 4.5,
            "email": "ada@example.com",
        }
        [event_id] = client.send_sync(inngest_mw.Event(name="shop/checkout", data=order))
        print(f"sent     shop/checkout  event {event_id}\n")
        run = _wait_for_run(http, event_id)
        print_run(run)
        runs = [run]
        for sent in _sent_events(run, demo_app.ORDER_COMPLETED):
            follow_on = _wait_for_run(http, sent)
            print(
                f"\nfollow-on run: step {demo_app.ORDER_COMPLETED} sent shop/order.completed"
                f" (event {sent}), which started {follow_on['function_id']}\n"
            )
            print_run(follow_on)
            runs.append(follow_on)
        return 0 if all(r["status"] == "Completed" for r in runs) else 1
