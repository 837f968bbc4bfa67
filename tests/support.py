"""Test support: real servers on 127.0.0.1 in background threads, and a call-request driver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from inngest_mw import signature


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def call_body(
    *,
    steps: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    attempt: int = 0,
    max_attempts: int = 4,
    disable_immediate: bool = False,
    run_id: str = "01RUN",
) -> dict[str, Any]:
    ev = event or {"name": "test/event", "data": {"x": 1}, "id": "01EVT", "ts": 1700000000000}
    steps = steps or {}
    return {
        "event": ev,
        "events": [ev],
        "steps": steps,
        "ctx": {
            "run_id": run_id,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "stack": {"stack": list(steps), "current": len(steps)},
            "disable_immediate_execution": disable_immediate,
            "use_api": False,
        },
        "version": 2,
        "use_api": False,
    }


class Caller:
    """Posts call requests to an SDK endpoint, optionally signed like the Inngest server signs."""

    def __init__(self, url: str, signing_key: str | None = None) -> None:
        self.url = url
        self.signing_key = signing_key
        self.http = httpx.Client(timeout=30)

    def call(self, fn_id: str, body: dict[str, Any], step_id: str = "step") -> httpx.Response:
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = {"content-type": "application/json"}
        if self.signing_key:
            headers["x-inngest-signature"] = signature.sign(raw, self.signing_key)
        return self.http.post(
            self.url, params={"fnId": fn_id, "stepId": step_id}, content=raw, headers=headers
        )

    def run_to_completion(
        self, fn_id: str, *, event: dict[str, Any] | None = None, limit: int = 50
    ) -> tuple[httpx.Response, list[str]]:
        """Drive a run like the executor: memoize StepRun, follow plans, sleeps resolve at once."""
        steps: dict[str, Any] = {}
        trace: list[str] = []
        pending = ["step"]
        disable = False
        for _ in range(limit):
            step_id = pending.pop(0) if pending else "step"
            res = self.call(
                fn_id, call_body(steps=steps, event=event, disable_immediate=disable), step_id
            )
            if res.status_code != 206:
                return res, trace
            ops = res.json()
            if len(ops) > 1:
                disable = True
            for op in ops:
                trace.append(f"{op['op']}:{op['displayName']}")
                if op["op"] == "StepRun":
                    steps[op["id"]] = {"data": op.get("data")}
                elif op["op"] == "StepFailed":
                    steps[op["id"]] = {"error": op["error"]}
                elif op["op"] in ("Sleep",) or op["op"] == "WaitForEvent":
                    steps[op["id"]] = None
                elif op["op"] == "StepPlanned":
                    pending.append(op["id"])
                elif op["op"] == "StepError":
                    raise AssertionError(f"unexpected retriable step error: {op}")
        raise AssertionError("run did not finish")


class EventSink:
    """A minimal event API (``POST /e/{key}``) that records what it receives; a real HTTP peer."""

    def __init__(self, fail_first: int = 0, status: int = 500) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        self.status = status
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_asgi_body(receive)
        self.calls += 1
        payload: dict[str, object]
        if self.calls <= self.fail_first:
            status, payload = self.status, {"error": "try again"}
        else:
            events = json.loads(body)
            self.received.extend(events)
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            status, payload = (
                200,
                {
                    "ids": [
                        f"id-{len(self.received) - len(events) + i}" for i in range(len(events))
                    ],
                    "status": 200,
                },
            )
        await send_json(send, status, payload)


async def send_json(send: Any, status: int, payload: object) -> None:
    """Answer an ASGI request with ``payload`` as JSON."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def read_asgi_body(receive: Any) -> bytes:
    """The whole request body an ASGI server hands over, message by message."""
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


class Rounds:
    """Holds requests in rounds of ``size``: ``await rounds.wait()`` returns once the whole round
    it fell in has arrived, so a client has ``size`` requests in flight at once."""

    def __init__(self, size: int) -> None:
        self.size, self.arrived = size, 0
        self._full: dict[int, asyncio.Event] = {}

    async def wait(self) -> None:
        this_round = self.arrived // self.size
        self.arrived += 1
        full = self._full.setdefault(this_round, asyncio.Event())
        if self.arrived % self.size == 0:
            full.set()
        await full.wait()
