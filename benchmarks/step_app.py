"""The app side of the engine CPU benchmark: an inngest-mw app in a process of its own.

``python -m benchmarks.step_app --port P --engine URL --steps 5`` serves, under uvicorn (one
worker, 127.0.0.1), a function running ``--steps`` ``step.run`` calls per ``bench/cpu`` event. It
counts what it does so the benchmark can prove the engine ran every step exactly once without
asking the engine (which would charge the engine's CPU): ``GET /stats`` answers the number of call
requests served, the steps executed (and how many ran more than once), the runs that reached their
end and the app-clock time of the first and last of those.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import uvicorn
from inngest_mw_asgi import InngestASGI, serve

import inngest_mw

__all__ = ["EVENT", "EVENT_IDLE", "Ledger", "build_app", "main"]

EVENT = "bench/cpu"
EVENT_IDLE = "bench/idle"
"""Triggers nothing: events the intake measurement sends so they add no runs."""
SERVE_PATH = "/api/inngest"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Ledger:
    """What the app did; one event loop serves every request, so no lock is needed."""

    def __init__(self) -> None:
        self.requests = 0
        self.steps: Counter[tuple[int, int]] = Counter()
        self.finished: dict[int, float] = {}
        self.started: dict[int, float] = {}

    def hit(self, n: int, step: int) -> int:
        self.steps[(n, step)] += 1
        if step == 0:
            self.started.setdefault(n, time.time())
        return n

    def finish(self, n: int) -> None:
        self.finished.setdefault(n, time.time())

    def stats(self) -> dict[str, Any]:
        ends = self.finished.values()
        return {
            "requests": self.requests,
            "steps": sum(self.steps.values()),
            "distinct_steps": len(self.steps),
            "duplicated_steps": sum(1 for hits in self.steps.values() if hits > 1),
            "started": len(self.started),
            "finished": len(self.finished),
            "last_finished_at": max(ends) if ends else None,
        }


def build_app(engine_url: str, steps: int, *, checkpointing: bool = False) -> tuple[Any, Ledger]:
    """The ASGI app (Inngest endpoint at ``/api/inngest`` plus ``GET /stats``) and its ledger.

    Checkpointing is off unless asked: the CPU benchmark's unit is one call request per step."""
    ledger = Ledger()
    client = inngest_mw.Inngest(
        app_id="bench-cpu",
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=checkpointing,
    )

    @client.create_function(fn_id="work", trigger=inngest_mw.TriggerEvent(event=EVENT))
    async def work(ctx: inngest_mw.Context) -> int:
        n = int(ctx.event.data["n"])
        for step in range(steps):
            await ctx.step.run(f"s{step}", ledger.hit, n, step)
        ledger.finish(n)
        return n

    inngest: InngestASGI = serve(client, [work], serve_path=SERVE_PATH)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/stats":
            body = json.dumps(ledger.stats()).encode()
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            ledger.requests += 1
        await inngest(scope, receive, send)

    return app, ledger


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine", required=True, help="engine URL the app registers with")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--checkpointing", action="store_true", help="run steps back to back (default: off)"
    )
    args = parser.parse_args(argv)
    app, _ = build_app(args.engine, max(1, args.steps), checkpointing=args.checkpointing)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
